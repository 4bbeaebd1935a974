"""POST /videos: a clip stylized across the workers (docs/guides/video.md); GET /jobs/{id} and the job routes
show its job like a photo's."""
