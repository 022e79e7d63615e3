async function generateVideo() {
try {
const response = await fetch('https://api.sora2api.ai/api/v1/sora2/generate', {
method: 'POST',
headers: {
'Authorization': 'Bearer YOUR_API_KEY',
'Content-Type': 'application/json'
},
body: JSON.stringify({
prompt: 'A cute kitten playing in a garden on a bright spring day',
aspectRatio: 'landscape',
quality: 'hd'
})
});
const data = await response.json();
if (response.ok && data.code === 200) {
console.log('Task submitted:', data);
console.log('Task ID:', data.data.taskId);
return data.data.taskId;
} else {
console.error('Request failed:', data.msg || 'Unknown error');
return null;
}
} catch (error) {
console.error('Error:', error.message);
return null;
}
}
generateVideo();
