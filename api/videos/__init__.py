"""POST /videos: a clip stylized across the workers (README "Video"); GET /jobs/{id} and the job routes
show its job like a photo's."""
