"""Adversarial models: a generator trained against a discriminator or critic (intro lecture
part I). Home of the GANs and their variants."""
