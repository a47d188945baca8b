"""fluxbot: a self-hosted Discord bot serving FLUX.1-schnell from your own GPUs."""

__version__ = "0.1.0"
