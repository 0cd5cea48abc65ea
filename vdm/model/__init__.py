"""The diffusion model's math: schedules, objectives, parameterizations, the network, the ELBO and the
ODE likelihood, samplers and guidance."""
