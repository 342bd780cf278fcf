"""FFHQ alignment with dlib's 68 landmarks, offline, on a real photo (skimage's astronaut)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from tests._cli import run_cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("dlib") is None
                                or importlib.util.find_spec("face_recognition_models") is None,
                                reason="the align extra (dlib-bin, face-recognition-models) is not installed")


@pytest.fixture(scope="module")
def astronaut():
    skimage = pytest.importorskip("skimage")
    return Image.fromarray(skimage.data.astronaut())


def _eye_line(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


@pytest.mark.parametrize("size", [256, 512])
def test_redetected_landmarks_sit_where_the_ffhq_procedure_puts_them(astronaut, size):
    from clipstyle.inversion.align import (
        align_photo,
        detect_faces,
        face_quad,
        predictor_path,
        quad_to_output,
    )

    assert predictor_path().name == "shape_predictor_68_face_landmarks.dat"
    face = align_photo(astronaut, size)
    assert face.image.size == (size, size) and face.faces >= 1
    again = detect_faces(np.asarray(face.image))
    assert again, "no face in the aligned output"
    found = again[0]
    expected = quad_to_output(face.landmarks, face.quad, size)
    scale = size / 256
    err = np.linalg.norm(found - expected, axis=1)
    assert float(np.median(err)) < 2.0 * scale and float(err.mean()) < 3.0 * scale, err
    # rotation: the eye line of the output is level (as the FFHQ crop makes it), like the mapped one
    (l_eye, r_eye), (l_exp, r_exp) = _eye_line(found), _eye_line(expected)
    angle = np.degrees(np.arctan2(*(r_eye - l_eye)[::-1]))
    angle_exp = np.degrees(np.arctan2(*(r_exp - l_exp)[::-1]))
    assert abs(angle - angle_exp) < 1.5 and abs(angle) < 3.0
    # scale and position: the crop the procedure would take from the output is the whole output
    quad = face_quad(found)
    side = np.linalg.norm(quad[3] - quad[0])
    assert abs(side / size - 1) < 0.03
    assert np.abs(quad.mean(axis=0) - size / 2).max() < 3.0 * scale
    # the eyes sit where FFHQ faces have them: eye distance ≈ side/4 (half side = 2 × eye distance)
    eye_dist = np.linalg.norm(r_eye - l_eye)
    assert abs(eye_dist / size - np.linalg.norm(r_exp - l_exp) / size) < 0.01


def test_face_near_the_border_is_reflect_padded(astronaut):
    """Cut the photo so the face square leaves it: the FFHQ crop pads by reflection (no flat band)."""
    from clipstyle.inversion.align import align_photo

    ref = align_photo(astronaut, 128)
    arr = np.asarray(astronaut)[60:, 150:]  # the face square now leaves the photo at the top
    face = align_photo(Image.fromarray(arr), 128, landmarks=ref.landmarks - (150, 60))
    assert face.quad.min() < 0  # the square leaves the photo
    out = np.asarray(face.image).astype(np.float64)
    top = out[:4]
    assert top.std() > 1.0  # reflected and blurred content, not one replicated colour
    inner = np.abs(np.asarray(ref.image, float)[40:100, 30:100] - out[40:100, 30:100]).mean()
    assert inner < 3.0  # the same face where the photo has it


def test_cli_align_largest_face_and_no_face(tmp_path, astronaut, capsys):
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    code, out, err = run_cli(["align", photo, "--size", "128"], capsys)
    assert code == 0, err
    path = tmp_path / "astronaut_aligned.png"
    assert out.strip() == str(path) and Image.open(path).size == (128, 128)
    code, _, err = run_cli(["align", photo, "--size", "128"], capsys)  # never overwritten silently
    assert code == 2 and err.count("\n") == 1
    two = Image.new("RGB", (1024, 512), (128, 128, 128))
    two.paste(astronaut.resize((512, 512)), (0, 0))
    two.paste(astronaut.resize((256, 256)), (640, 128))
    two.save(tmp_path / "two.png")
    code, out, err = run_cli(["align", tmp_path / "two.png", "--size", "64", "--out", tmp_path / "a.png"], capsys)
    assert code == 0 and "aligned the largest" in err
    Image.new("RGB", (200, 200), (30, 90, 200)).save(tmp_path / "sky.png")
    code, out, err = run_cli(["align", tmp_path / "sky.png"], capsys)
    assert code == 1 and err.strip() == "error: no face was found in the photo; run without --align"
