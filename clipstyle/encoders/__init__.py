"""Image encoders for real photos: the e4e encoder (photo → W+) and the ArcFace identity model, both on the
IR-SE50 backbone (:mod:`clipstyle.encoders.irse`). Import the submodules; nothing heavy happens here."""
