"""Loading and validating input images: the one place where a file or a byte
string becomes an RGB `PIL.Image` or a clear reason why it cannot.

Repairable inputs (greyscale, palette, RGBA, 16-bit, CMYK, EXIF-rotated,
animated) are converted and every conversion is reported as a note; unusable
ones (missing, corrupt, too small, too large) raise `ImageError`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from evaluation.ingestion.files import Location, confined

MIN_SIDE = 8  # px; the toy world is 32 px, real datasets are larger
MAX_SIDE = 16384
# The decoded-size budget, checked from the header before any pixel is decoded: a 24 MP photo fits,
# a decompression bomb (a few KB of PNG declaring 16384 × 3900 px) does not.
MAX_PIXELS = 25_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024


class ImageError(ValueError):
    """An input image that cannot be used; `str()` is the reason, for one line of output."""


@dataclass
class LoadedImage:
    """An RGB image ready for the methods, its PNG encoding and what was done to it."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)

    @property
    def png(self) -> bytes:
        return png_bytes(self.image)


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding (same pixels → same bytes → same content hash)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def load_image(source: str | Location | bytes, *, root: Location | None = None,
               allow_blank: bool = False) -> LoadedImage:
    """Open `source` (a path, or encoded bytes) as RGB.

    With `root`, a path must resolve (symlinks followed) inside `root`; this is
    how manifest paths are confined to the manifest's folder (local or on an object store).
    """
    if isinstance(source, bytes):
        data = source
    else:
        data = _read_file(source if isinstance(source, Location) else Path(source), root)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"file too large ({len(data) / 2**20:.0f} MiB, limit {MAX_FILE_BYTES / 2**20:.0f} MiB)")
    return decode_image(data, allow_blank=allow_blank)


def _read_file(path: Location, root: Location | None) -> bytes:
    if "\x00" in str(path):
        raise ImageError("the path holds a NUL byte")
    try:
        return _read_checked(path, root)
    except OSError as exc:
        raise ImageError(f"cannot be read ({exc.strerror or exc})") from None


def _read_checked(path: Location, root: Location | None) -> bytes:
    if root is not None:
        try:
            path = confined(root, path)
        except ValueError as exc:
            raise ImageError(str(exc)) from None
    if not path.exists():
        raise ImageError("file not found")
    if not path.is_file():
        raise ImageError("not a regular file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImageError(f"file too large ({path.stat().st_size / 2**20:.0f} MiB)")
    return path.read_bytes()


def decode_image(data: bytes, *, allow_blank: bool = False) -> LoadedImage:
    """Decode encoded image bytes, check the size, convert to RGB and note each conversion. A blank
    (constant) image is refused unless `allow_blank` (a change map of zeros is one)."""
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size  # read from the header, before any pixel is decoded
            _check_size(width, height)
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown format or corrupt header)") from None
    except Exception as exc:  # PIL raises many types for corrupt data (OSError, SyntaxError, ValueError, …)
        raise ImageError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    loaded = _to_rgb(image)
    if not allow_blank and is_constant(loaded.image):  # nothing to edit or to learn from: refused before any work
        repaired = f" after {'; '.join(loaded.notes)}" if loaded.notes else ""
        raise ImageError(f"blank image: every pixel is {loaded.image.getpixel((0, 0))}{repaired}")
    return loaded


def _check_size(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image too small ({width}×{height} px, minimum side {MIN_SIDE} px)")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageError(f"image too large ({width}×{height} px, limit {MAX_SIDE} px a side, {MAX_PIXELS:,} px)")


def _to_rgb(image: Image.Image) -> LoadedImage:
    notes: list[str] = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append(f"kept the first of {image.n_frames} frames")
        image.seek(0)
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation not in (0, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"applied EXIF orientation {orientation}")
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_bit_depth_to_l(image)
        notes.append(f"converted {mode} (high bit depth) to 8-bit")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("converted palette (P) to RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append(f"composited {image.mode} transparency on white")
        else:
            notes.append(f"dropped the opaque alpha channel of {image.mode}")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        if image.mode in ("L", "1"):
            notes.append(f"converted greyscale ({image.mode}) to RGB")
        else:
            notes.append(f"converted {image.mode} to RGB")
        image = image.convert("RGB")
    return LoadedImage(image=image, notes=notes)


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float greyscale → 8-bit "L", scaled, not clipped."""
    array = np.asarray(image).astype(np.float64)
    if not np.isfinite(array).any():
        raise ImageError(f"every pixel of the {image.mode} image is NaN or infinite")
    if image.mode == "F":
        scale = 255.0 if np.nanmax(array) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if np.nanmax(array) > 255 else 1.0
    array = np.nan_to_num(array * scale, nan=0.0)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))  # 2-D uint8 → "L"


def is_constant(image: Image.Image) -> bool:
    """True when every pixel has the same value (blank, black, grey fill…)."""
    low_high = image.getextrema()
    bands = low_high if isinstance(low_high[0], tuple) else (low_high,)
    return all(low == high for low, high in bands)
