"""Latent-variable models: p(x) = integral of p(z) p(x | z) dz (tomczak-dgm, intro lecture
part II, isachenko-l07). Home of the linear-Gaussian models, density networks and VAEs."""
