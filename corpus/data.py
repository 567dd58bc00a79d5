"""Representative inputs for the corpus models, made here: text rendered with Pillow, speech-like
audio synthesised from pulse trains and formants, and crops of the photographs scikit-learn ships.
Every maker takes (count, seed) and is deterministic for a seed."""

from __future__ import annotations

import string
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Arrays = dict[str, np.ndarray]

_WORDS = (
    "edge",
    "model",
    "fleet",
    "device",
    "update",
    "bundle",
    "signed",
    "int8",
    "float",
    "tensor",
    "sample",
    "latency",
    "camera",
    "sensor",
    "label",
    "build",
    "target",
    "profile",
    "runtime",
    "invoice",
    "total",
    "amount",
    "date",
    "order",
    "number",
)


@cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text(rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 4))))
    if kind == 1:
        return "".join(
            str(rng.choice(list(string.digits))) for _ in range(int(rng.integers(4, 12)))
        )
    return f"{rng.choice(_WORDS)} {int(rng.integers(1, 99999))}"


def _photo_crop(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    photo = _photos()[int(rng.integers(0, len(_photos())))]
    side = int(rng.integers(120, min(photo.shape[:2]) + 1))
    top = int(rng.integers(0, photo.shape[0] - side + 1))
    left = int(rng.integers(0, photo.shape[1] - side + 1))
    return Image.fromarray(photo[top : top + side, left : left + side]).resize((width, height))


def _line_image(rng: np.random.Generator, text: str) -> Image.Image:
    """One text line on a light, slightly textured background, cropped to the text."""
    size = int(rng.integers(26, 40))
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(2, 8))
    w, h = int(right - left) + 2 * pad, int(bottom - top) + 2 * pad
    bg = tuple(int(v) for v in rng.integers(180, 256, size=3))
    fg = tuple(int(v) for v in rng.integers(0, 90, size=3))
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=fg)
    noisy = np.asarray(img, np.float32) + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _ppocr_line(img: Image.Image, height: int, width: int) -> np.ndarray:
    """PaddleOCR's line preprocessing: resize to ``height`` keeping the ratio (at most
    ``width``), scale to [-1, 1], pad on the right with zeros. CHW float32."""
    w = min(width, max(1, round(img.width * height / img.height)))
    arr = np.asarray(img.resize((w, height)), np.float32).transpose(2, 0, 1) / 255.0
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :w] = (arr - 0.5) / 0.5
    return out


def text_orientation(count: int, seed: int) -> Arrays:
    """Text lines for PaddleOCR's orientation classifier: label 0 upright, 1 turned 180."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(count):
        img = _line_image(rng, _text(rng))
        label = i % 2
        if label:
            img = img.rotate(180)
        images.append(_ppocr_line(img, 48, 192))
        labels.append(label)
    return {"x": np.stack(images), "labels": np.asarray(labels, np.int64)}


def text_lines(count: int, seed: int) -> Arrays:
    """Text lines for the PP-OCRv4 recogniser (3x48x320)."""
    rng = np.random.default_rng(seed)
    return {
        "x": np.stack([_ppocr_line(_line_image(rng, _text(rng)), 48, 320) for _ in range(count)])
    }


def text_scenes(count: int, seed: int, size: int = 320) -> Arrays:
    """Scenes for the DB text detector: text lines pasted on photo crops or plain paper,
    ImageNet-normalised NCHW (as PaddleOCR feeds its detector)."""
    rng = np.random.default_rng(seed)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    scenes = []
    for i in range(count):
        if i % 2:
            scene = _photo_crop(rng, size, size)
        else:
            scene = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(200, 256, 3)))
        for _ in range(int(rng.integers(2, 6))):
            line = _line_image(rng, _text(rng))
            if line.width > size - 8:
                line = line.resize((size - 8, max(8, line.height * (size - 8) // line.width)))
            x = int(rng.integers(0, size - line.width + 1))
            y = int(rng.integers(0, size - line.height + 1))
            scene.paste(line, (x, y))
        arr = np.asarray(scene, np.float32).transpose(2, 0, 1) / 255.0
        scenes.append((arr - mean) / std)
    return {"x": np.stack(scenes).astype(np.float32)}


def photo_crops_nchw(count: int, seed: int, size: int = 320) -> Arrays:
    """Crops of scikit-learn's photographs, NCHW in [0, 1] (YOLOv8's input)."""
    rng = np.random.default_rng(seed)
    crops = [
        np.asarray(_photo_crop(rng, size, size), np.float32).transpose(2, 0, 1) / 255.0
        for _ in range(count)
    ]
    return {"images": np.stack(crops)}


def _drawn_face(rng: np.random.Generator, size: int) -> Image.Image:
    """A photo crop with a simple drawn face (skin-toned oval, eyes, brows, mouth) on it."""
    img = _photo_crop(rng, size, size)
    d = ImageDraw.Draw(img)
    w = int(rng.integers(size // 3, size * 3 // 4))
    h = int(w * 1.3)
    x0 = int(rng.integers(0, max(1, size - w)))
    y0 = int(rng.integers(0, max(1, size - h)))
    skin = tuple(
        int(v) for v in (rng.integers(150, 240), rng.integers(110, 190), rng.integers(80, 160))
    )
    d.ellipse((x0, y0, x0 + w, y0 + h), fill=skin)
    for ex in (x0 + w * 0.3, x0 + w * 0.7):
        ey = y0 + h * 0.42
        d.ellipse(
            (ex - w * 0.08, ey - w * 0.05, ex + w * 0.08, ey + w * 0.05), fill=(245, 245, 245)
        )
        d.ellipse(
            (ex - w * 0.035, ey - w * 0.035, ex + w * 0.035, ey + w * 0.035), fill=(40, 30, 20)
        )
        d.line(
            (ex - w * 0.1, ey - w * 0.12, ex + w * 0.1, ey - w * 0.13), fill=(60, 40, 30), width=3
        )
    d.line((x0 + w * 0.5, y0 + h * 0.45, x0 + w * 0.46, y0 + h * 0.62), fill=(120, 80, 60), width=2)
    d.arc(
        (x0 + w * 0.3, y0 + h * 0.6, x0 + w * 0.7, y0 + h * 0.8),
        20,
        160,
        fill=(150, 40, 40),
        width=3,
    )
    return img


def face_crops_nhwc(count: int, seed: int, size: int = 128) -> Arrays:
    """BlazeFace's input: NHWC in [-1, 1]; half drawn faces, half bare photo crops."""
    rng = np.random.default_rng(seed)
    imgs = [
        _drawn_face(rng, size) if i % 2 == 0 else _photo_crop(rng, size, size) for i in range(count)
    ]
    return {"input": np.stack([np.asarray(i, np.float32) / 127.5 - 1.0 for i in imgs])}


def hand_crops_nhwc(count: int, seed: int, size: int = 224) -> Arrays:
    """The hand landmark model's input: NHWC in [0, 1]; photo crops with a drawn hand (palm and
    five fingers) on half of them."""
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(count):
        img = _photo_crop(rng, size, size)
        if i % 2 == 0:
            d = ImageDraw.Draw(img)
            skin = (int(rng.integers(170, 240)), int(rng.integers(120, 190)), 110)
            cx, cy, r = size // 2, size * 3 // 5, size // 6
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=skin)
            for k, angle in enumerate(np.linspace(-1.9, -0.3, 5) + rng.normal(0, 0.1, 5)):
                length = r * (1.4 + 0.3 * (k in (1, 2)))
                tip = (cx + length * np.cos(angle) * 1.6, cy + length * np.sin(angle) * 1.6)
                d.line((cx, cy, *tip), fill=skin, width=max(6, r // 3))
        imgs.append(np.asarray(img, np.float32) / 255.0)
    return {"input_1": np.stack(imgs)}


def _speech_like(rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """Syllables of a vowel-like sound (a glottal pulse train through three formant
    resonators, with pitch drift and an amplitude envelope) between pauses of room noise."""
    n = int(seconds * rate)
    out = rng.normal(0, 0.003, n)
    t = 0
    while t < n:
        t += int(rng.integers(rate // 10, rate // 3))  # a pause
        length = int(rng.integers(rate // 8, rate // 2))
        if t + length > n:
            break
        pitch = rng.uniform(90, 240) * (1 + 0.1 * np.sin(np.linspace(0, 3, length)))
        phase = np.cumsum(pitch / rate)
        source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
        voiced = np.zeros(length)
        for formant, bandwidth in (
            (rng.uniform(300, 900), 80),
            (rng.uniform(900, 2400), 120),
            (rng.uniform(2400, 3400), 160),
        ):
            r = np.exp(-np.pi * bandwidth / rate)
            theta = 2 * np.pi * formant / rate
            a1, a2 = 2 * r * np.cos(theta), -r * r
            y = np.zeros(length)
            for k in range(2, length):  # a two-pole resonator, explicit to stay numpy-only
                y[k] = source[k] + a1 * y[k - 1] + a2 * y[k - 2]
            voiced += y / (np.abs(y).max() + 1e-9)
        envelope = np.sin(np.linspace(0, np.pi, length)) ** 0.5
        out[t : t + length] += 0.3 * voiced / 3 * envelope
        t += length
    return out.astype(np.float32)


def vad_windows(count: int, seed: int) -> Arrays:
    """Silero VAD's streaming inputs: 512-sample windows of 16 kHz audio with the 64 samples
    before them (576 in all), and the LSTM state (h, c) the model itself reached after the
    previous windows of the same recording, so states are the ones a device really feeds."""
    import onnxruntime as ort

    import corpus

    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(corpus.get("silero-vad").path()))
    inputs: list[np.ndarray] = []
    hs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    while len(inputs) < count:
        audio = _speech_like(rng, 4.0)
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        context = np.zeros(64, np.float32)
        for start in range(0, len(audio) - 512 + 1, 512):
            window = np.concatenate([context, audio[start : start + 512]])[None, :]
            inputs.append(window[0])
            hs.append(h[0])
            cs.append(c[0])
            _, h, c = session.run(None, {"input": window, "h": h, "c": c})
            context = audio[start + 512 - 64 : start + 512]
            if len(inputs) == count:
                break
    pick = np.linspace(0, len(inputs) - 1, count).astype(int)
    return {
        "input": np.stack([inputs[i] for i in pick]),
        "h": np.stack([hs[i] for i in pick]),
        "c": np.stack([cs[i] for i in pick]),
    }
