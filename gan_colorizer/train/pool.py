"""The history of generated images that D sees (Shrivastava et al. 2017; pix2pix and CycleGAN's --pool_size: 0 in
their pix2pix and colorization models, 50 in CycleGAN): D is trained on fakes from earlier steps too, so that it does
not chase only the generator's latest output."""
from __future__ import annotations

import torch


class ImagePool:
    """Until `size` fakes are stored, each is kept and passed on; after that each fake is, with probability 1/2,
    swapped for a stored one drawn at random (D sees the stored one, the new one takes its place) or passed on.
    Its draws come from its own seeded generator, and state_dict() holds the stored images and that generator, so
    a resumed run sees the pool it stopped with."""

    def __init__(self, size: int, seed: int):
        self.size, self.count, self.images = size, 0, None
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        """fakes (B, C, H, W), detached -> what D judges as fake this step (the same shape)."""
        if self.size == 0:
            return fakes
        if self.images is None or self.images.shape[1:] != fakes.shape[1:]:  # a run resumed at another size
            self.images, self.count = fakes.new_empty(self.size, *fakes.shape[1:]), 0  # starts its pool again
        out = fakes.clone()
        for i, fake in enumerate(fakes):
            if self.count < self.size:
                self.images[self.count] = fake
                self.count += 1
            elif torch.rand((), generator=self.rng) < 0.5:
                j = int(torch.randint(self.size, (), generator=self.rng))
                out[i] = self.images[j]
                self.images[j] = fake
        return out

    def state_dict(self) -> dict:
        stored = self.images[:self.count].cpu() if self.images is not None else torch.empty(0)
        return {"images": stored, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device) -> None:
        """The stored fakes and the generator's state; a resume with a smaller --pool-size keeps the first ones."""
        images = state["images"][:self.size]
        self.count = len(images)
        if self.count:
            self.images = images.new_empty(self.size, *images.shape[1:]).to(device)
            self.images[:self.count] = images.to(device)
        self.rng.set_state(state["rng"])
