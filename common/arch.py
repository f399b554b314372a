"""The architecture in closed form: layer shapes, parameter counts and FLOPs, framework-neutral."""

from __future__ import annotations

IMAGE_SIZE = 28
CONV1_CHANNELS, CONV2_CHANNELS, HIDDEN, NUM_CLASSES = 32, 64, 128, 10
LAYERS = ("conv1", "conv2", "dense1", "dense2")
VALID_KERNEL_SIZES = (1, 3, 5, 7, 9)


def spatial_sizes(k: int) -> tuple[int, int, int, int]:
    """Side lengths after conv1, pool1, conv2, pool2 ('valid' convs, 2x2 pools that floor)."""
    if k < 1:
        raise ValueError(f"kernel size must be >= 1, got {k}")
    c1 = IMAGE_SIZE - k + 1
    p1 = c1 // 2
    c2 = p1 - k + 1
    p2 = c2 // 2
    if min(c1, p1, c2, p2) < 1:
        raise ValueError(
            f"kernel size {k} leaves no spatial extent (28 -> conv {c1} -> pool {p1} -> conv {c2} -> pool {p2}); "
            f"use one of {VALID_KERNEL_SIZES}"
        )
    return c1, p1, c2, p2


def flat_features(k: int) -> int:
    return CONV2_CHANNELS * spatial_sizes(k)[3] ** 2


def layer_shapes(k: int, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Output shape of every layer, channels-first (NCHW) as torch lays them out."""
    c1, p1, c2, p2 = spatial_sizes(k)
    return {
        "conv1": (batch, CONV1_CHANNELS, c1, c1),
        "pool1": (batch, CONV1_CHANNELS, p1, p1),
        "conv2": (batch, CONV2_CHANNELS, c2, c2),
        "pool2": (batch, CONV2_CHANNELS, p2, p2),
        "flatten": (batch, flat_features(k)),
        "dense1": (batch, HIDDEN),
        "dense2": (batch, NUM_CLASSES),
    }


def state_dict_shapes(k: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes in torch's state_dict layout (OIHW kernels, (out, in) dense weights)."""
    return {
        "conv1.weight": (CONV1_CHANNELS, 1, k, k),
        "conv1.bias": (CONV1_CHANNELS,),
        "conv2.weight": (CONV2_CHANNELS, CONV1_CHANNELS, k, k),
        "conv2.bias": (CONV2_CHANNELS,),
        "dense1.weight": (HIDDEN, flat_features(k)),
        "dense1.bias": (HIDDEN,),
        "dense2.weight": (NUM_CLASSES, HIDDEN),
        "dense2.bias": (NUM_CLASSES,),
    }


def param_counts(k: int) -> dict[str, int]:
    """Trainable parameters per layer and in total (225,034 at k = 3)."""
    counts = {layer: 0 for layer in LAYERS}
    for name, shape in state_dict_shapes(k).items():
        n = 1
        for d in shape:
            n *= d
        counts[name.split(".")[0]] += n
    counts["total"] = sum(counts[layer] for layer in LAYERS)
    return counts


def forward_flops(k: int) -> int:
    """Multiply-adds x 2 of one sample's forward pass (convs and dense layers; ReLU/pool ignored)."""
    c1, _, c2, _ = spatial_sizes(k)
    conv1 = 2 * c1 * c1 * CONV1_CHANNELS * (1 * k * k)
    conv2 = 2 * c2 * c2 * CONV2_CHANNELS * (CONV1_CHANNELS * k * k)
    dense = 2 * (flat_features(k) * HIDDEN + HIDDEN * NUM_CLASSES)
    return conv1 + conv2 + dense


def train_flops(k: int) -> int:
    """Forward + backward of one sample: backward costs two forwards (input and weight gradients),
    except that conv1 needs no input gradient (the image is not trained)."""
    c1 = spatial_sizes(k)[0]
    conv1 = 2 * c1 * c1 * CONV1_CHANNELS * (k * k)
    return 3 * forward_flops(k) - conv1
