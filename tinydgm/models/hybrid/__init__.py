"""Models that combine families (ermon-song-cs236-l16, kuleshov-l12): an autoregressive
decoder in a VAE, a flow trained adversarially, an autoencoder with an adversarial prior."""
