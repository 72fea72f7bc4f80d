"""The runner process: claims a pool's jobs, drives a real cog server, reports back."""
