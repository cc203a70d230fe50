"""One module per recipe step, each a ``lightning.pytorch.Callback``; import them from ``lightning_recipe``."""
