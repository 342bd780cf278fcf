"""Text-driven generator adaptation (StyleGAN-NADA, Gal et al. 2022): a trained copy of a generator whose images
change from a source text's domain to a target text's (or style images'), latent by latent.

:mod:`.losses` the directional and global CLIP losses; :mod:`.layers` which layers train (adaptive selection);
:mod:`.trainer` the training itself; :mod:`.provenance` what an adapted network records about its base.
"""
