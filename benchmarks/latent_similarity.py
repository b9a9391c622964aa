"""How alike the hypernetwork's head inputs are across documents: the mean pairwise cosine, over layers and
latent slots, of the centred, L2-normalised latents of held-out documents, centred by the checkpoint's
running mean (what the head sees) and by these documents' own mean (what it would see if the offset shared
by all documents were removed), and the document-specific part's norm relative to the mean latent.

    python benchmarks/latent_similarity.py smollm2-135m runs/x/step_00250 --data runs/val_s0r/test.jsonl --n 32
    python benchmarks/latent_similarity.py smollm2-135m --data runs/val_s0r/test.jsonl --n 12 --by-kind

With --by-kind, the same statistics within each kind of document (personal, niah, realdoc; --n of each), and
`offset_over_doc_part`: how far these documents' own mean is from the running mean, relative to a document's
own part (above 1: the shared offset outweighs what tells the documents apart).
"""

from __future__ import annotations

import argparse
import json
import random

import torch
import torch.nn.functional as F

from d2l_memory.data.types import read_jsonl
from d2l_memory.engine import D2L


def mean_pairwise_cosine(c: torch.Tensor) -> float:
    """c [n, L, S, d] unit vectors -> mean cosine over document pairs a != b, layers and slots."""
    n = c.shape[0]
    cos = torch.einsum("alsd,blsd->abls", c, c)  # [n, n, L, S]
    return float(cos[~torch.eye(n, dtype=torch.bool)].mean())


@torch.no_grad()
def first_chunk_latents(d2l: D2L, texts: list[str]) -> torch.Tensor:
    """Each text's first chunk (as the hypernetwork reads a short memory) -> latents [n, L, S, d] (fp32),
    before centring and the L2 norm."""
    zs = []
    for t in texts:
        with d2l.autocast():
            feats, mask = d2l.encoder.activations(d2l.doc_chunks(t)[:1])
        zs.append(d2l.hypernet.latents(feats.float(), mask).float())
    return torch.cat(zs)


@torch.no_grad()
def latent_stats(d2l: D2L, texts: list[str]) -> dict:
    z = first_chunk_latents(d2l, texts)  # [n, L, S, d]
    own = z.mean(0)
    out = {"docs": len(texts), "doc_part_over_mean": float((z - own).norm(dim=-1).mean() / own.norm(dim=-1).mean()),
           "cos_own_centred": mean_pairwise_cosine(F.normalize(z - own, dim=-1))}
    if hasattr(d2l.hypernet, "latent_mean"):
        lm = d2l.hypernet.latent_mean
        out["cos_head_inputs"] = mean_pairwise_cosine(F.normalize(z - lm, dim=-1))
        out["offset_over_doc_part"] = float((own - lm).norm(dim=-1).mean() / (z - own).norm(dim=-1).mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", required=True, help="samples JSONL (e.g. validate's cached held-out set)")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by-kind", action="store_true", help="also each kind of document alone (--n of each)")
    a = p.parse_args()
    if a.n < 2:
        p.error(f"--n must be >= 2 (pairs of documents), got {a.n}")
    samples = read_jsonl(a.data)
    random.Random(a.seed).shuffle(samples)
    groups = {"all": [s.context for s in samples[: a.n]]}
    if a.by_kind:
        for s in samples:
            groups.setdefault(s.kind, []).append(s.context)
        groups = {k: v[: a.n] for k, v in groups.items() if len(v) >= 2}
    for ck in a.checkpoints:
        d2l = D2L.from_pretrained(ck)
        for kind, texts in groups.items():
            print(json.dumps({"checkpoint": ck, "kind": kind, **latent_stats(d2l, texts)}))


if __name__ == "__main__":
    main()
