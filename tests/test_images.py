"""Input images: repairable ones become RGB with a note, unusable ones raise with a reason."""

import pytest
from makers import awkward_images, encode, gradient, unusable_images
from PIL import Image

from evaluation.ingestion.images import ImageError, decode_image, is_constant, load_image

EXPECTED_NOTE = {"grey": "greyscale", "palette": "palette", "rgba": "transparency", "grey16": "high bit depth",
                 "exif_rotated": "EXIF orientation 6", "cmyk": "CMYK", "animated": "first of 2 frames"}
EXPECTED_REASON = {"corrupt": "not a readable image", "truncated": "not a readable image",
                   "not_an_image": "not a readable image", "empty": "empty", "tiny": "too small", "huge": "too large",
                   "bomb": "too large", "blank_rgba": "blank image", "nan_tiff": "NaN"}


@pytest.mark.parametrize("name", sorted(EXPECTED_NOTE))
def test_repairable_inputs_become_rgb_and_say_what_was_done(name):
    loaded = decode_image(awkward_images()[name])
    assert loaded.image.mode == "RGB"
    assert any(EXPECTED_NOTE[name] in note for note in loaded.notes), loaded.notes
    assert not is_constant(loaded.image)


def test_exif_rotation_is_applied_to_the_pixels():
    loaded = decode_image(awkward_images()["exif_rotated"])
    assert loaded.image.size == (24, 40)  # 40×24 stored, displayed rotated by 90°


def test_sixteen_bit_grey_is_scaled_not_clipped():
    image = decode_image(awkward_images()["grey16"]).image
    low, high = image.convert("L").getextrema()
    assert high > 200 and low < 60  # clipping 16-bit values to 255 would make it almost all white


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(encode(rgba)).image
    assert image.getpixel((5, 5)) == (255, 255, 255) and image.getpixel((0, 0)) == (255, 0, 0)


def test_clean_rgb_png_has_no_notes_and_round_trips():
    data = encode(gradient())
    loaded = decode_image(data)
    assert loaded.notes == [] and loaded.png == data


@pytest.mark.parametrize("name", sorted(EXPECTED_REASON))
def test_unusable_inputs_raise_a_one_line_reason(name):
    with pytest.raises(ImageError) as info:
        decode_image(unusable_images()[name])
    assert EXPECTED_REASON[name] in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_escaping_path(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nothere.png")
    inside = tmp_path / "inside"
    inside.mkdir()
    (tmp_path / "outside.png").write_bytes(encode(gradient()))
    with pytest.raises(ImageError, match="escapes"):
        load_image("../outside.png", root=inside)
    (inside / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ImageError, match="escapes"):  # a symlink is followed before the check
        load_image("link.png", root=inside)
    (inside / "ok.png").write_bytes(encode(gradient()))
    assert load_image("ok.png", root=inside).image.size == (40, 24)
    with pytest.raises(ImageError, match="NUL byte"):
        load_image("ok\x00.png", root=inside)


def test_a_blank_change_map_is_allowed_where_asked_for():
    black = encode(Image.new("L", (16, 16), 0))
    with pytest.raises(ImageError, match="blank"):
        decode_image(black)
    assert decode_image(black, allow_blank=True).image.size == (16, 16)


def test_constant_images_are_detected():
    assert is_constant(Image.new("RGB", (8, 8), (128, 128, 128)))
    assert not is_constant(gradient())
