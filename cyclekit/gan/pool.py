"""History of generated images for the discriminator (Shrivastava et al. 2017, Sec. 2.3)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class ImagePool:
    """Keeps up to `size` past fakes; each query returns, per image, with probability 1/2 an
    older fake (swapping the new one in) and otherwise the new fake, as in the CycleGAN reference
    (Zhu et al. 2017, Sec. 4: "a history of 50 previously generated images").

    Size 0 disables the pool: queries return their input unchanged. The pool owns its random
    generator so that its choices are part of the checkpoint and a resumed run repeats them.
    """

    def __init__(self, size: int, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.device = device  # where restored images go
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                # Filling up: keep the image and return it.
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(1, generator=self.generator).item() < 0.5:
                idx = int(torch.randint(0, self.size, (1,), generator=self.generator).item())
                out.append(self.images[idx].clone())
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        # A list, not one stacked tensor: with preprocess none or scale_width the fakes keep their
        # images' sizes, which may all differ.
        return {
            "size": self.size,
            "images": [img.cpu() for img in self.images],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["size"] != self.size:
            raise ValueError(f"pool size {state['size']} in the checkpoint, {self.size} configured")
        images = state["images"]
        if isinstance(images, Tensor):  # cyclekit 0.x checkpoints: one stacked tensor (empty: none)
            images = list(images) if images.numel() else []
        self.images = [img.to(self.device) for img in images]
        self.generator.set_state(state["generator"])
