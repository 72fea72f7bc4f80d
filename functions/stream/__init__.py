"""The stream function: the API app's SSE routes under the Lambda Web Adapter (response streaming)."""
