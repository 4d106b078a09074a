"""The course's networks, one module per family, and reading their checkpoints.

- :mod:`mae_nb.models.autoencoders`: MLP, convolutional, masked (denoising) and adversarial
  autoencoders for image tiles (chapters 01-02).
- :mod:`mae_nb.models.mae`: the masked autoencoder ViT, with Meta's parameter names (chapters
  03-05).
- :mod:`mae_nb.models.attention`: what a ViT-MAE's encoder attends to: one block's attention
  weights, recomputed (timm's fused attention keeps none), as maps per head (chapter 03).
- :mod:`mae_nb.models.checkpoints`: from a state dict or checkpoint file to an MAE, or why not.
- :mod:`mae_nb.models.spectral`: the spectral transformer for hyperspectral pixels (chapters
  07-08).
- :mod:`mae_nb.models.baselines`: the per-pixel hyperspectral classifiers the spectral
  transformer is compared with.

This layer is pure: it imports torch, timm, :mod:`mae_nb.masking` and :mod:`mae_nb.errors`
only. Getting a model (a registry name, chapter 03's, a stand-in) is :mod:`mae_nb.pretrained`.
"""
