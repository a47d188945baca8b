"""fluxbot's GPU benchmark: stock diffusers vs fluxbot's worker path on the same card (see
bench/README.md; run with `python -m bench run`)."""
