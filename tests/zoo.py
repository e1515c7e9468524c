"""Small versions of every model family, shared by the tests that must hold for the whole zoo."""

ZOO = [
    {"model": "resnet20", "shortcut": "B"},
    {"model": "resnet20", "shortcut": "A"},
    {"model": "resnet32", "width": 0.5},
    {"model": "resnet44", "width": 0.5},
    {"model": "resnet18", "width": 0.25},
    {"model": "resnet34", "stem": "imagenet", "width": 0.25},
    {"model": "preactresnet18", "width": 0.25},
    {"model": "densenet121", "width": 0.25},
    {"model": "mobilenetv2", "width": 0.25},
    {"model": "airnet", "widths": [16, 16, 32], "stem_channels": 12},
    {"model": "airnet", "widths": [16, 16, 32], "stem_channels": 12, "late_pool": 1},
]


def zoo_id(spec: dict) -> str:
    return "-".join(str(v) for v in spec.values())
