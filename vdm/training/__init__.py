"""Training loops: the diffusion model's trainer and the noise-conditional classifier."""
