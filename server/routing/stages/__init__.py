"""The pipeline's stages, in the order a ticket meets them: cache, local, review, hosted, human."""
