"""sora_async: an asyncio-native SDK for the Sora 2 text-to-video APIs."""
