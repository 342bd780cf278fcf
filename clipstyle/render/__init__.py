"""Images out: uint8 conversion, PNG/GIF/MP4 writing and grids (:mod:`clipstyle.render.files`)."""
