"""Model families, one module each, every one on the engine and toolkit and each
docstring naming the lecture and paper equations it implements.

Protocol (where meaningful): ``log_prob(x)`` (nats per example), ``bits_per_dim(x)``,
``loss(x)`` (the batch objective ``train.fit`` minimises), ``sample(n, rng)``; latent
variable models add ``elbo``/``log_prob_estimate``, energy-based ones ``energy``/``free_energy``.
"""
