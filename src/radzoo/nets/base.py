"""The contract every zoo network follows, so zoo, converters, ONNX export and serving stay generic."""

from __future__ import annotations

import torch
from torch import nn


class EncoderNet(nn.Module):
    """Base of all zoo networks.

    * Parameter names are radzoo's canonical names (METHODS 0.2): ``image_backbone.*``,
      ``image_pool.*``, ``text_backbone.*`` ... so converters only rename prefixes.
    * ``image_outputs`` maps each named image output to its width; ``image_features(x, name)``
      computes one of them from a preprocessed batch ``[B, C, H, W]``.
    * Text-bearing nets set ``has_text`` and implement their method's text encoders.
    """

    image_outputs: dict[str, int] = {}
    has_text: bool = False
    has_graph_tower: bool = False  # IGCL: embeds report knowledge graphs into the joint space

    @property
    def output_widths(self) -> dict[str, int]:
        """Every named output a spec may list, with its width: the one source of output widths.

        2D nets: their image outputs. CT nets override this with their volume outputs.
        """
        return dict(self.image_outputs)

    def image_features(self, x: torch.Tensor, output: str) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} has no 2D image encoder")

    def check_output(self, output: str) -> None:
        if output not in self.image_outputs:
            raise ValueError(
                f"{type(self).__name__} has no output {output!r}; it offers {sorted(self.image_outputs)}"
            )


class ImageOutput(nn.Module):
    """``forward(x) = net.image_features(x, output)``: one named output as a plain module (ONNX export)."""

    def __init__(self, net: EncoderNet, output: str) -> None:
        super().__init__()
        net.check_output(output)
        self.net = net
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.image_features(x, self.output)
