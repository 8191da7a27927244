"""Test inputs made on the fly: images in every awkward format, manifests, hub-schema Parquet files."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from models.toy.world import Scene, render


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def scene_image(colour: str = "red", shape: str = "circle", seed: int = 0, size: int = 32) -> Image.Image:
    image = render(Scene("large", colour, shape, "white"), seed)
    return image if size == 32 else image.resize((size, size))


def gradient(width: int = 40, height: int = 24) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                          np.full((height, width, 1), 90.0)], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def png_with_header_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR claims width×height (a 'huge' image that costs nothing to make)."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (1, 2, 3))))
    ihdr = 8  # after the signature: length(4) 'IHDR'(4) data(13) crc(4)
    data[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4:ihdr + 21])) & 0xFFFFFFFF
    data[ihdr + 21:ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def awkward_images() -> dict[str, bytes]:
    """Repairable inputs, by name."""
    base = gradient()
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    grey16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "grey": encode(base.convert("L")),
        "palette": encode(base.convert("P", palette=Image.Palette.ADAPTIVE)),
        "rgba": encode(rgba),
        "grey16": encode(grey16),
        "exif_rotated": encode(base, "JPEG", exif=exif),
        "cmyk": encode(base.convert("CMYK"), "JPEG"),
        "animated": gif.getvalue(),
    }


def unusable_images() -> dict[str, bytes]:
    """Inputs that must be refused, by name."""
    good = encode(gradient())
    return {
        "corrupt": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        "truncated": good[: len(good) // 2],
        "not_an_image": b"hello, world",
        "empty": b"",
        "tiny": encode(Image.new("RGB", (4, 4), (10, 20, 30))),
        "huge": png_with_header_size(30000, 30000),
        "bomb": png_with_header_size(16384, 3900),  # 7.8 KB as a real file; 64 M px decoded
        "blank_rgba": encode(Image.new("RGBA", (16, 16), (255, 0, 0, 0))),  # all transparent: white after repair
        "nan_tiff": nan_tiff(),
    }


def nan_tiff() -> bytes:
    """A float (mode F) TIFF whose every pixel is NaN."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16), np.nan, dtype=np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def write_manifest(folder: Path) -> dict[str, str]:
    """A manifest folder with two good triplets (one needing repairs) and five bad rows.
    Returns the expected outcome per triplet id: 'ok' or a word of the error."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {"a.png": scene_image("red", "circle", 1), "a2.png": scene_image("blue", "circle", 1),
              "b.png": scene_image("red", "square", 2), "bgt.png": scene_image("blue", "square", 2)}
    for name, image in images.items():
        image.save(folder / name)
    (folder / "b_palette.png").write_bytes(encode(scene_image("red", "star", 3).convert("P")))
    (folder / "corrupt.png").write_bytes(b"not a png at all")
    (folder.parent / "outside.png").write_bytes(encode(scene_image("green", "cross", 4)))
    rows = [
        ("good", "a.png", "a2.png", "b.png", "bgt.png", "make it blue"),
        ("repaired", "a.png", "a2.png", "b_palette.png", "", "make it blue"),
        ("escapes", "a.png", "a2.png", "../outside.png", "", ""),
        ("missing", "a.png", "a2.png", "nothere.png", "", ""),
        ("corrupt", "corrupt.png", "a2.png", "b.png", "", ""),
        ("good", "a.png", "a2.png", "b.png", "", "duplicate id"),
        ("no_b", "a.png", "a2.png", "", "", ""),
    ]
    lines = ["triplet_id,a,a_prime,b,b_prime_gt,instruction"] + [",".join(r) for r in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return {"good": "ok", "repaired": "ok", "escapes": "escapes", "missing": "not found", "corrupt": "readable",
            "good#row-00006": "duplicated", "no_b": "no b"}


HF_FEATURES = {
    "instructpix2pix": {"original_prompt": "string", "original_image": "Image", "edit_prompt": "string",
                        "edited_prompt": "string", "edited_image": "Image"},
    "magicbrush": {"img_id": "string", "turn_index": "int32", "source_img": "Image", "mask_img": "Image",
                   "instruction": "string", "target_img": "Image"},
}


def write_hub_parquet(path: Path, kind: str, rows: list[dict]) -> Path:
    """A Parquet file in the hub's schema: images as {bytes, path} structs and the
    `huggingface` schema metadata that makes `datasets` decode them as images."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    types = {"string": pa.string(), "int32": pa.int32(), "Image": image_type}
    schema = pa.schema([(name, types[t]) for name, t in HF_FEATURES[kind].items()])
    features = {name: ({"_type": "Image"} if t == "Image" else {"dtype": t, "_type": "Value"})
                for name, t in HF_FEATURES[kind].items()}
    schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    encoded = [{k: ({"bytes": encode(v), "path": None} if isinstance(v, Image.Image) else v) for k, v in r.items()}
               for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(encoded, schema=schema), path)
    return path


def ip2p_rows() -> list[dict]:
    """Six rows, three edit prompts: 'make it blue' ×3, 'make it a star' ×2, 'unique' ×1."""
    spec = [("make it blue", "red", "blue", "circle", "circle"), ("make it blue", "red", "blue", "square", "square"),
            ("Make it  BLUE", "green", "blue", "cross", "cross"), ("make it a star", "red", "red", "circle", "star"),
            ("make it a star", "yellow", "yellow", "square", "star"), ("unique", "purple", "orange", "cross", "cross")]
    return [{"original_prompt": f"a {c0} {s0}", "original_image": scene_image(c0, s0, i), "edit_prompt": edit,
             "edited_prompt": f"a {c1} {s1}", "edited_image": scene_image(c1, s1, i)}
            for i, (edit, c0, c1, s0, s1) in enumerate(spec)]


def magicbrush_rows() -> list[dict]:
    return [{"img_id": str(i), "turn_index": 1, "source_img": scene_image("red", s, i),
             "mask_img": Image.new("RGB", (32, 32)), "instruction": edit, "target_img": scene_image("blue", s, i)}
            for i, (edit, s) in enumerate([("paint it blue", "circle"), ("paint it blue", "square"), ("x", "star")])]


def write_hostile_manifest(folder: Path) -> dict[str, str]:
    """A JSONL manifest whose bad lines each fail alone: not objects, a NUL byte, Latin-1 bytes,
    a blank RGBA and an all-NaN TIFF, beside good rows (one with U+2028 and U+0085 inside its
    instruction, which must stay one row, its text exact). Returns the expected outcome per
    triplet id ('ok' or a word of the error)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in {"a.png": scene_image("red", "circle", 1), "a2.png": scene_image("blue", "circle", 1),
                        "b.png": scene_image("red", "square", 2)}.items():
        image.save(folder / name)
    (folder / "blank.png").write_bytes(unusable_images()["blank_rgba"])
    (folder / "nan.tiff").write_bytes(unusable_images()["nan_tiff"])

    def row(triplet_id: str, b: str = "b.png", **extra) -> bytes:
        record = {"triplet_id": triplet_id, "a": "a.png", "a_prime": "a2.png", "b": b, **extra}
        return json.dumps(record, ensure_ascii=False).encode()

    lines = [
        row("good", instruction="make it blue"),
        b"[1, 2, 3]",
        b"null",
        row("nul_path", b="b\u0000.png").replace(b"\\u0000", b"\u0000"),
        row("latin1").replace(b'"b.png"', b'"b.png", "instruction": "caf\xe9 au lait"'),
        row("separators", instruction="make it\u2028blue\u0085now"),
        row("blank_b", b="blank.png"),
        row("nan_b", b="nan.tiff"),
        row("good2"),
    ]
    (folder / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return {"good": "ok", "row-00002": "JSON array", "row-00003": "JSON null", "nul_path": "NUL byte",
            "row-00005": "not valid UTF-8", "separators": "ok", "blank_b": "blank image", "nan_b": "NaN",
            "good2": "ok"}


def write_tiny_vlm(folder: Path, first_token: str) -> Path:
    """A tiny Qwen2-VL built from a config (37 k parameters), with a word-level tokenizer written here and
    Qwen2-VL's chat-template layout, saved as `AutoModelForImageTextToText` / `AutoProcessor` load it. Its
    lm_head is zero, so greedy decoding says token 0, `first_token`, every step."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    vocab: dict[str, int] = {}
    for word in [first_token, "1", "2", "Answer", ":", "tie", "<unk>", *specials]:
        vocab.setdefault(word, len(vocab))
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", pad_token="<|endoftext|>",
                                        eos_token="<|im_end|>", additional_special_tokens=specials)
    template = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
                "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
                "<|vision_start|><|image_pad|><|vision_end|>{% else %}"
                "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                   temporal_patch_size=2)
    Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                     chat_template=template).save_pretrained(folder)
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                     "eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3, "mlp_ratio": 2},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(folder)
    return folder


def write_tiny_editor(folder: Path, pipe, scheduler: str = "euler_ancestral") -> Path:
    """A tiny InstructPix2Pix pipeline built from configs: a random 8-channel UNet (noisy latent ⊕ image latent)
    on the toy pipeline's VAE, text encoder and tokenizer, saved as `StableDiffusionInstructPix2PixPipeline`
    loads it (the real-format stand-in for `timbrooks/instruct-pix2pix`)."""
    import torch
    from diffusers import (
        DDIMScheduler,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )

    from models.toy import architecture as arch

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=arch.IMAGE_SIZE // 4, in_channels=8, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=4,
        cross_attention_dim=pipe.text_encoder.config.hidden_size, norm_num_groups=16)
    betas = {k: v for k, v in arch.scheduler_config().items() if k not in ("set_alpha_to_one", "clip_sample")}
    sched = EulerAncestralDiscreteScheduler(**betas) if scheduler == "euler_ancestral" else \
        DDIMScheduler(**arch.scheduler_config())
    StableDiffusionInstructPix2PixPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False).save_pretrained(folder)
    return folder


def write_tiny_inpainter(folder: Path, pipe, grid: int = 64) -> Path:
    """A tiny inpainting pipeline built from configs: a random 9-channel UNet (noisy latent ⊕ mask ⊕ masked
    latent) at `grid` px with 7 transformer blocks (down 2, mid 1, up 4), on the toy pipeline's VAE, text
    encoder and tokenizer, saved as `StableDiffusionInpaintPipeline` loads it (the real-format stand-in for
    `stable-diffusion-v1-5/stable-diffusion-inpainting`)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    from models.toy import architecture as arch

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=grid // 4, in_channels=9, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
        cross_attention_dim=pipe.text_encoder.config.hidden_size, norm_num_groups=16)
    StableDiffusionInpaintPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
        scheduler=DDIMScheduler(**arch.scheduler_config()), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).save_pretrained(folder)
    return folder
