"""archfarm: provision multi-architecture docker buildx farms on Compute Engine."""
