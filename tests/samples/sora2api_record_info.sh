curl -X GET "https://api.sora2api.ai/api/v1/sora2/record-info?taskId=YOUR_TASK_ID" \
-H "Authorization: Bearer YOUR_API_KEY"
