"""MoCo-CXR ``.pth.tar`` (METHODS 1.2): ``{epoch, arch, state_dict, optimizer}``, DDP ``module.`` keys.

KEEP   ``module.encoder_q.*`` minus the head            -> ``image_backbone.*``
KEEP   ``module.encoder_q.fc.*`` / ``classifier.*``      -> ``image_proj.*``   (only with keep_head)
DROP   the head when not kept (explicitly: the reference loaders only drop ``fc*`` and load
       non-strictly, which silently ignores DenseNet's ``classifier.*``)
DROP   ``module.encoder_k.*`` (momentum copy), ``module.queue``, ``module.queue_ptr``
"""

from __future__ import annotations

from pathlib import Path

from radzoo.converters.conversion import Converted
from radzoo.converters.pickles import CheckpointError, open_checkpoint, state_dict_of
from radzoo.converters.remap import Rule, apply_rules, require_keys
from radzoo.errors import InputError
from radzoo.zoo.registry import get_spec
from radzoo.zoo.spec import ModelSpec

FORMAT = "moco_cxr"
VERSION = "1"
PROJ_DIM = 128  # MoCo dim (METHODS 1.4)

#: torchvision trunk -> name of its head module in encoder_q (METHODS 1.2)
HEADS = {"resnet18": "fc.", "resnet50": "fc.", "densenet121": "classifier.", "mnasnet1_0": "classifier."}


def rules(arch: str, keep_head: bool) -> tuple[list[Rule], list[str], list[str]]:
    """(keep rules, dropped prefixes, dropped exact keys) for one trunk."""
    head = "module.encoder_q." + HEADS[arch]
    keep = [Rule("module.encoder_q.", "image_backbone.", exclude=(head,))]
    drop = ["module.encoder_k."]
    if keep_head:
        keep.append(Rule(head, "image_proj."))
    else:
        drop.append(head)
    return keep, drop, ["module.queue", "module.queue_ptr"]


def convert(
    path: str | Path,
    *,
    arch: str | None = None,
    keep_head: bool = False,
    name: str | None = None,
    spec: ModelSpec | None = None,
    trust_pickle: bool = False,
) -> Converted:
    """Convert one MoCo-CXR checkpoint. ``arch`` is read from the file; a given ``arch`` must agree."""
    path = Path(path)
    obj = open_checkpoint(path, trust_pickle=trust_pickle)
    state = state_dict_of(obj, path, location="state_dict")
    file_arch = obj.get("arch")
    if arch is not None and file_arch is not None and arch != file_arch:
        raise InputError(f"--arch {arch!r} disagrees with the checkpoint's own arch entry {file_arch!r} in {path}")
    arch = arch or file_arch
    if arch is None:
        raise CheckpointError(f"{path} has no 'arch' entry; pass --arch (one of {', '.join(HEADS)})")
    if arch not in HEADS:
        raise InputError(
            f"unsupported MoCo-CXR arch {arch!r} in {path}; supported: {', '.join(HEADS)} "
            "(MNASNet has no canonical trunk in radzoo yet)"
        )
    what = f"MoCo-CXR checkpoint {path.name}"
    require_keys(state, ["module.encoder_q."], what=what)
    keep, drop, drop_exact = rules(arch, keep_head)
    remapped = apply_rules(state, keep, drop, drop_exact=drop_exact, what=what)
    if keep_head and not any(k.startswith("image_proj.") for k in remapped.state):
        raise CheckpointError(f"{path}: --keep-head was asked but the file has no {HEADS[arch]}* head in encoder_q")

    base = spec or get_spec(f"mococxr_{arch}")
    arch_args = {**dict(base.arch_args), "trunk": arch, "proj_dim": PROJ_DIM if keep_head else None}
    description = base.description
    if keep_head:
        description += " This artifact also keeps the 128-d MoCo projection head (output 'proj', L2-normalised)."
    return Converted.of_file(
        path, base, remapped, module=__name__, version=VERSION, format=FORMAT, name=name, arch_args=arch_args,
        default_output="trunk", description=description,
        details={"arch": arch, "epoch": obj.get("epoch"), "kept_head": keep_head},
    )
