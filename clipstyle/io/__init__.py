"""Files in and out, usable from every floor of the house and importing nothing else of ours.

* :mod:`clipstyle.io.cache` — the download cache (aliases, ``file://``/``https://``, checksums, locks).
* :mod:`clipstyle.io.files` — atomic writes, ``run.json`` serialisation, run folders.
* :mod:`clipstyle.io.images` — the one image reader (EXIF orientation, alpha, 16-bit) and image → tensor.
"""
