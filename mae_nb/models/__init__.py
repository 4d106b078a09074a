"""The course's networks, one module per family.

- :mod:`mae_nb.models.autoencoders`: MLP, convolutional, masked (denoising) and adversarial
  autoencoders for image tiles (chapters 01-02).
"""
