"""Darknet importer: a YOLOv3/v4-tiny-style ``.cfg`` and its ``.weights`` → a Keras model of stock layers and its heads' spec."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file
from imgrec.core.settings import Settings
from imgrec.modeling.yolo_spec import YoloHeadSpec

BATCH_NORM_EPSILON = 1e-5  # Darknet's normalize: (x - mean) / sqrt(variance + .00001)
LEAKY_SLOPE = 0.1
SUPPORTED_SECTIONS = ("net", "convolutional", "shortcut", "route", "maxpool", "upsample", "dropout", "yolo")
SUPPORTED_ACTIVATIONS = ("leaky", "linear")

# The pretrained detectors imgrec ships, as published upstream (see ../shared/detection/PROVENANCE.md).
UPSTREAM_REPOSITORY = "dog-qiuqiu/Yolo-Fastest"
UPSTREAM_COMMIT = "96a2900d163196c396e73f3fdab04ca4dd9a2f70"
UPSTREAM_FOLDER = "ModelZoo/yolo-fastest-1.1_coco"
KNOWN_SHA256 = {
    "yolo-fastest-1.1-xl.weights": "fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5",
    "yolo-fastest-1.1-xl.cfg": "c458427acc4fbeabceff4528ef7b65b066c0308ce599460f8ba299eba63abad3",
    "yolo-fastest-1.1.weights": "1c445c42bbd6df63edea2cc69f99667b5650d663ca11e34b116240740cd42890",
    "yolo-fastest-1.1.cfg": "f6df5775c1e862998cf69046eba9265be3ae84dfe8b2caab7529823f0795bf70",
    "coco.names": "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84",
}
SHIPPED_DETECTORS = ("yolo-fastest-1.1-xl", "yolo-fastest-1.1")  # each a folder and the stem of its files


class DarknetError(ModelError):
    """A Darknet ``.cfg``/``.weights`` pair this importer cannot read; the message says what and where."""


@dataclass
class Section:
    kind: str
    line: int  # where it starts in the .cfg, for error messages
    options: dict[str, str] = field(default_factory=dict)

    def integer(self, key: str, default: int | None = None) -> int:
        return int(self._value(key, default))

    def number(self, key: str, default: float | None = None) -> float:
        return float(self._value(key, default))

    def integers(self, key: str) -> list[int]:
        return [int(part) for part in self._value(key, None).split(",") if part.strip()]

    def _value(self, key: str, default):
        raw = self.options.get(key)
        if raw is None:
            if default is None:
                raise DarknetError(f"[{self.kind}] at line {self.line} has no '{key}'. Expected '{key}=...'.")
            return default
        try:
            float(raw.split(",")[0])
        except ValueError:
            raise DarknetError(f"[{self.kind}] at line {self.line}: {key}={raw!r} is not a number.") from None
        return raw


@dataclass(frozen=True)
class DarknetModel:
    """An imported detector: raw head maps out (``spec.masks`` order), float [0, 1] RGB in."""

    model: object  # keras.Model
    spec: YoloHeadSpec
    weights_read: int  # float32 values read from the .weights file (all of them)


def parse_cfg(text: str) -> list[Section]:
    """The sections of a ``.cfg`` in order, ``[net]`` first; unknown sections are refused by name."""
    sections: list[Section] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            kind = header.group(1).lower()
            if kind not in SUPPORTED_SECTIONS:
                raise DarknetError(f"Unsupported section [{kind}] at line {number}. "
                                   f"Expected one of: {', '.join(f'[{s}]' for s in SUPPORTED_SECTIONS)}.")
            sections.append(Section(kind, number))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise DarknetError(f"Line {number} of the .cfg is neither '[section]' nor 'key=value' "
                               f"inside a section: {raw_line.strip()!r}.")
    if not sections or sections[0].kind != "net":
        raise DarknetError("The .cfg does not start with a [net] section. Expected a Darknet model .cfg.")
    return sections


def head_spec(sections: list[Section]) -> YoloHeadSpec:
    """Input size from ``[net]``, anchors, masks and classes from the ``[yolo]`` sections in order."""
    net = sections[0]
    yolos = [s for s in sections if s.kind == "yolo"]
    if not yolos:
        raise DarknetError("The .cfg has no [yolo] section. Expected a YOLO detector.")
    anchors = _anchors(yolos[0])
    classes = yolos[0].integer("classes")
    for yolo in yolos:
        if _anchors(yolo) != anchors or yolo.integer("classes") != classes:
            raise DarknetError(f"[yolo] at line {yolo.line} has other anchors or classes than the first [yolo]. "
                               "Expected the same anchors and classes in every head.")
        if yolo.number("scale_x_y", 1.0) != 1.0:
            raise DarknetError(f"[yolo] at line {yolo.line} has scale_x_y={yolo.options['scale_x_y']}. "
                               "Expected 1 (the standard YOLOv3 decoding).")
    masks = tuple(tuple(yolo.integers("mask")) if "mask" in yolo.options else tuple(range(len(anchors)))
                  for yolo in yolos)
    for yolo, mask in zip(yolos, masks):
        if any(not 0 <= index < len(anchors) for index in mask):
            raise DarknetError(f"[yolo] at line {yolo.line}: mask {list(mask)} names anchors outside 0..{len(anchors) - 1}.")
    return YoloHeadSpec(input_size=(net.integer("height"), net.integer("width")), anchors=anchors,
                        masks=masks, num_classes=classes)


def _anchors(yolo: Section) -> tuple[tuple[int, int], ...]:
    values = yolo.integers("anchors")
    if len(values) % 2:
        raise DarknetError(f"[yolo] at line {yolo.line} has an odd number of anchor values ({len(values)}). "
                           "Expected width,height pairs.")
    return tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))


class _WeightsReader:
    """The float32 values after the header, handed out in order; counts what is used."""

    def __init__(self, data: bytes, source: str):
        self.source = source
        if len(data) < 16:
            raise DarknetError(f"{source} is {len(data)} bytes. Expected a Darknet .weights file (a 16- or 20-byte "
                               "header, then float32 values).")
        major, minor, _revision = np.frombuffer(data[:12], "<i4")
        # Version 0.2 and later store the number of images seen as 64 bits, earlier ones as 32.
        header = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
        body = data[header:]
        if len(body) % 4:
            raise DarknetError(f"{source} holds {len(body)} bytes after its {header}-byte header, not a whole "
                               "number of float32 values. Expected a Darknet .weights file.")
        self.values = np.frombuffer(body, "<f4")
        self.used = 0

    def take(self, count: int, what: str) -> np.ndarray:
        if self.used + count > len(self.values):
            raise DarknetError(f"{self.source} ends too early: {what} needs {count} values at value {self.used}, "
                               f"but the file holds {len(self.values)} values. Expected the .weights file of "
                               "this .cfg.")
        chunk = self.values[self.used : self.used + count]
        self.used += count
        return chunk

    def check_all_used(self) -> None:
        left = len(self.values) - self.used
        if left:
            raise DarknetError(f"{self.source} holds {len(self.values)} float32 values but the .cfg uses "
                               f"{self.used} ({left} left over). Expected the .weights file of this .cfg.")


def build_model(sections: list[Section], weights: bytes, source: str = "the .weights file") -> DarknetModel:
    """The Keras model of parsed sections, with every value of ``weights`` loaded (an error otherwise)."""
    import keras

    spec = head_spec(sections)
    net = sections[0]
    if net.integer("channels", 3) != 3:
        raise DarknetError(f"[net] has channels={net.options['channels']}. Expected 3 (RGB).")
    reader = _WeightsReader(weights, source)
    inputs = keras.Input((*spec.input_size, 3), name="images")
    outputs: list = []  # one tensor per section after [net]; route and shortcut index into it
    heads: list = []
    x = inputs
    loads: list[tuple[object, list[np.ndarray]]] = []  # layers and their weights, set once the model is built
    for index, section in enumerate(sections[1:]):
        kind = section.kind
        if kind == "convolutional":
            x = _convolutional(x, index, section, reader, loads)
        elif kind == "shortcut":
            x = _shortcut(x, index, section, outputs)
        elif kind == "route":
            x = _route(index, section, outputs)
        elif kind == "maxpool":
            size = section.integer("size")
            x = keras.layers.MaxPooling2D(size, section.integer("stride", 1), padding="same", name=f"pool{index}")(x)
        elif kind == "upsample":
            x = keras.layers.UpSampling2D(section.integer("stride", 2), interpolation="nearest", name=f"up{index}")(x)
        elif kind == "yolo":
            heads.append(x)
        elif kind == "net":
            raise DarknetError(f"A second [net] section at line {section.line}. Expected one, first.")
        # [dropout] does nothing at inference: x passes through unchanged.
        outputs.append(x)
    reader.check_all_used()
    model = keras.Model(inputs, heads, name="darknet")
    for layer, values in loads:
        layer.set_weights(values)
    for head, mask in zip(model.outputs, spec.masks):
        expected = len(mask) * (5 + spec.num_classes)
        if head.shape[-1] != expected:
            raise DarknetError(f"A [yolo] head gets {head.shape[-1]} channels. Expected {len(mask)} anchors × "
                               f"(5 + {spec.num_classes} classes) = {expected}.")
    return DarknetModel(model=model, spec=spec, weights_read=reader.used)


def _convolutional(x, index: int, section: Section, reader: _WeightsReader, loads: list):
    import keras

    filters, size = section.integer("filters"), section.integer("size", 1)
    stride, groups = section.integer("stride", 1), section.integer("groups", 1)
    padding = size // 2 if section.integer("pad", 0) else section.integer("padding", 0)
    activation = section.options.get("activation", "logistic")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise DarknetError(f"[convolutional] at line {section.line} has activation={activation}. "
                           f"Expected one of: {', '.join(SUPPORTED_ACTIVATIONS)}.")
    channels = x.shape[-1]
    if channels % groups or filters % groups:
        raise DarknetError(f"[convolutional] at line {section.line}: groups={groups} does not divide its "
                           f"{channels} input channels and {filters} filters.")
    batch_normalize = bool(section.integer("batch_normalize", 0))
    # Darknet's order per layer: biases (BN beta), [BN gamma, mean, variance], then the kernel (out, in/groups, h, w).
    bias = reader.take(filters, f"the biases of [convolutional] at line {section.line}")
    if batch_normalize:
        gamma, mean, variance = (reader.take(filters, f"batch norm of [convolutional] at line {section.line}")
                                 for _ in range(3))
    kernel = reader.take(filters * (channels // groups) * size * size,
                         f"the kernel of [convolutional] at line {section.line}")
    kernel = kernel.reshape(filters, channels // groups, size, size).transpose(2, 3, 1, 0)
    if padding:
        x = keras.layers.ZeroPadding2D(padding, name=f"pad{index}")(x)
    depthwise = groups > 1 and groups == channels == filters
    if depthwise:
        layer = keras.layers.DepthwiseConv2D(size, stride, use_bias=not batch_normalize, name=f"dw{index}")
        values = [kernel.transpose(0, 1, 3, 2)]  # (h, w, 1, c) → (h, w, c, 1)
    else:
        layer = keras.layers.Conv2D(filters, size, stride, groups=groups, use_bias=not batch_normalize,
                                    name=f"conv{index}")
        values = [kernel]
    x = layer(x)
    if batch_normalize:
        loads.append((layer, values))
        norm = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"bn{index}")
        x = norm(x)
        loads.append((norm, [gamma, bias, mean, variance]))
    else:
        loads.append((layer, [*values, bias]))
    if activation == "leaky":
        x = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"leaky{index}")(x)
    return x


def _layer_at(index: int, reference: int, section: Section, outputs: list):
    absolute = index + reference if reference < 0 else reference
    if not 0 <= absolute < index:
        raise DarknetError(f"[{section.kind}] at line {section.line} refers to layer {reference}, "
                           f"which is not an earlier layer (this is layer {index}).")
    return outputs[absolute]


def _shortcut(x, index: int, section: Section, outputs: list):
    import keras

    if "weights_type" in section.options or section.options.get("activation", "linear") != "linear":
        raise DarknetError(f"[shortcut] at line {section.line}: only plain additions (activation=linear, "
                           "no weights_type) are supported.")
    sources = [_layer_at(index, reference, section, outputs) for reference in section.integers("from")]
    return keras.layers.Add(name=f"add{index}")([x, *sources])


def _route(index: int, section: Section, outputs: list):
    import keras

    sources = [_layer_at(index, reference, section, outputs) for reference in section.integers("layers")]
    x = sources[0] if len(sources) == 1 else keras.layers.Concatenate(name=f"route{index}")(sources)
    groups, group = section.integer("groups", 1), section.integer("group_id", 0)
    if groups > 1:
        channels = x.shape[-1]
        if channels % groups or not 0 <= group < groups:
            raise DarknetError(f"[route] at line {section.line}: groups={groups}, group_id={group} do not split "
                               f"its {channels} channels.")
        width = channels // groups
        x = x[..., group * width : (group + 1) * width]  # a stock Keras slicing op in the functional graph
    return x


def import_darknet(cfg_path: Path, weights_path: Path) -> DarknetModel:
    """Read and build a ``.cfg``/``.weights`` pair; the shipped upstream files are checked against their sha256."""
    for path in (cfg_path, weights_path):
        if not Path(path).is_file():
            raise DarknetError(f"{path} is not a file. Expected a Darknet .cfg and its .weights.")
        verify_known_file(Path(path))
    try:
        text = Path(cfg_path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DarknetError(f"{cfg_path} is not a text file. Expected a Darknet .cfg.") from None
    return build_model(parse_cfg(text), Path(weights_path).read_bytes(), source=Path(weights_path).name)


def verify_known_file(path: Path) -> None:
    """A file named like one of the shipped upstream files must be that file, byte for byte."""
    expected = KNOWN_SHA256.get(path.name)
    if expected and (actual := sha256_file(path)) != expected:
        raise DarknetError(f"{path} has sha256 {actual}. Expected {expected}, the file of {UPSTREAM_REPOSITORY} "
                           f"at commit {UPSTREAM_COMMIT}; {fetch_instructions(path.name.split('.')[0])}")


def read_names(path: Path) -> list[str]:
    """Class names of a Darknet ``.names`` file: one a line, blank lines skipped."""
    if not Path(path).is_file():
        raise DarknetError(f"{path} is not a file. Expected a .names file with one class name a line.")
    verify_known_file(Path(path))
    names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DarknetError(f"{path} holds no class names. Expected one class name a line.")
    return names


def fetch_instructions(stem: str) -> str:
    """How to get and import a shipped detector by hand on a machine without the shared folder."""
    folder = f"https://github.com/{UPSTREAM_REPOSITORY}/tree/{UPSTREAM_COMMIT}/{UPSTREAM_FOLDER}"
    return (f"fetch {stem}.cfg, {stem}.weights and coco.names of {UPSTREAM_REPOSITORY} at commit {UPSTREAM_COMMIT} "
            f"({folder}) by hand, then run: python -m imgrec import darknet {stem}.cfg {stem}.weights "
            f"--names coco.names --name coco-{stem.replace('-1.1', '')}")


def shipped_detector_files(stem: str, settings: Settings) -> tuple[Path, Path, Path]:
    """The checked ``.cfg``, ``.weights`` and ``coco.names`` of a shipped detector; nothing is downloaded."""
    if stem not in SHIPPED_DETECTORS:
        raise DarknetError(f"No shipped detector '{stem}'. Expected one of: {', '.join(SHIPPED_DETECTORS)}.")
    folder = settings.shared_detection_dir / stem
    files = (folder / f"{stem}.cfg", folder / f"{stem}.weights", folder / "coco.names")
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise DarknetError(f"{folder} lacks {', '.join(missing)}. Nothing is downloaded: {fetch_instructions(stem)}")
    for path in files:
        verify_known_file(path)
    return files
