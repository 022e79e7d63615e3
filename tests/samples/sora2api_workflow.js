class Sora2API {
constructor(apiKey) {
this.apiKey = apiKey;
this.baseUrl = 'https://api.sora2api.ai/api/v1/sora2';
}
async generateVideo(options) {
const response = await fetch(`${this.baseUrl}/generate`, {
method: 'POST',
headers: {
'Authorization': `Bearer ${this.apiKey}`,
'Content-Type': 'application/json'
},
body: JSON.stringify(options)
});
const result = await response.json();
if (!response.ok || result.code !== 200) {
throw new Error(`Generation failed: ${result.msg || 'Unknown error'}`);
}
return result.data.taskId;
}
async waitForCompletion(taskId, maxWaitTime = 600000) { // Max wait 10 minutes
const startTime = Date.now();
while (Date.now() - startTime < maxWaitTime) {
const status = await this.getTaskStatus(taskId);
switch (status.successFlag) {
case 0:
console.log('Task generating, waiting...');
break;
case 1:
console.log('Generation completed successfully!');
return status.response;
case 2:
const taskError = status.errorMessage || 'Task creation failed';
console.error('Task creation failed:', taskError);
if (status.errorCode) {
console.error('Error code:', status.errorCode);
}
throw new Error(taskError);
case 3:
const generateError = status.errorMessage || 'Task generation failed';
console.error('Generation failed:', generateError);
if (status.errorCode) {
console.error('Error code:', status.errorCode);
}
throw new Error(generateError);
default:
console.log(`Unknown status: ${status.successFlag}`);
if (status.errorMessage) {
console.error('Error message:', status.errorMessage);
}
break;
}
// Wait 30 seconds before checking again
await new Promise(resolve => setTimeout(resolve, 30000));
}
throw new Error('Generation timeout');
}
async getTaskStatus(taskId) {
const response = await fetch(`${this.baseUrl}/record-info?taskId=${taskId}`, {
method: 'GET',
headers: {
'Authorization': `Bearer ${this.apiKey}`
}
});
const result = await response.json();
if (!response.ok || result.code !== 200) {
throw new Error(`Status check failed: ${result.msg || 'Unknown error'}`);
}
return result.data;
}
}
// Usage example
async function main() {
const api = new Sora2API('YOUR_API_KEY');
try {
// Text to video generation
console.log('Starting video generation...');
const taskId = await api.generateVideo({
prompt: 'A cute kitten playing in a garden on a bright spring day, camera slowly zooming in',
aspectRatio: 'landscape',
quality: 'hd',
watermark: 'My Video'
});
// Wait for completion
console.log(`Task ID: ${taskId}. Waiting for completion...`);
const result = await api.waitForCompletion(taskId);
console.log('Video generation successful!');
console.log('Video URL:', result.imageUrl);
} catch (error) {
console.error('Error:', error.message);
}
}
main();
