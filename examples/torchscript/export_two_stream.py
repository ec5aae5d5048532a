#!/usr/bin/env python3
"""Exports a small UniVL-like two-stream model for meltr-tui's `torchscript` workload.

Writes, into --out (default: this folder):
  model.pt            TorchScript: forward(batch: Dict[str, Tensor]) -> Dict[str, Tensor],
                      and the optional loss(batch, name: str) -> Tensor
  train.safetensors   precomputed "S3D-like" clip features, caption token ids, masks
  val.safetensors     the same for validation

Export with the PyTorch that meltr-tui links (2.11.0; `scripts/setup.sh` installs it):
    $(readlink .torch-python) examples/torchscript/export_two_stream.py
    meltr-tui run -c examples/torchscript/two_stream.toml

The model: a video encoder (linear projection of frame features + transformer),
a text encoder (embeddings + transformer), a cross encoder over both streams,
and heads for the losses, named as in UniVL:
  retrieval  symmetric InfoNCE between pooled video and text embeddings (primary)
  align      video-text matching: true pairs vs pairs shifted within the batch
  mlm        masked token prediction through the cross encoder
  mfm        masked frame feature regression through the cross encoder
  scramble   predicts a per-clip random label (harmful by construction)
Metrics (keys `metric/...`, averaged over validation batches):
  metric/R@1  in-batch text-to-video recall at 1, in percent
  metric/mlm_acc  masked-token accuracy, in percent

With --attention sdpa (default) the encoders are PyTorch's stock
nn.TransformerEncoderLayer, whose attention runs the fused scaled-dot-product
kernels (neither double backward nor forward-mode derivatives: the meta step
runs its passes that need them with the fused kernels off, the math path, and
says so in the log). With --attention
matmul they are written from elementary ops (matmul + softmax attention,
layer norm written out): both AID modes work, and forward-mode AD gives the
meta step exact JVPs and Hessian-vector products.

By default no randomness inside forward (dropout 0, masks come with the
data). --dropout P adds dropout to every encoder layer (after attention and
in the feed-forward block, as nn.TransformerEncoderLayer has it): meltr-tui
seeds libtorch's generator before each forward from (seed, step, which
forward), so the meta step's repeated evaluations of a batch see one mask
and scripts/meltr_replay.py draws the same masks.

--tie-embeddings makes the MLM head use the text embedding's matrix (one
parameter in two modules, trained once per step) and --freeze-positions
exports the position embeddings with requires_grad False (left untrained):
tests/parity.rs checks both against the replay.
"""

import argparse
import ctypes
import json
import os
import struct
import warnings
from typing import Dict, Tuple

# torch works without numpy; the warning would only confuse.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import Tensor, nn
import torch.nn.functional as F

FRAMES = 8
FEATURES = 32
WORDS = 8
VOCAB = 48
MASK_TOKEN = VOCAB  # one extra embedding row
EVENTS = 12


class PlainLayerNorm(nn.Module):
    """Layer norm from elementary ops: libtorch's fused layer-norm backward
    has no forward derivative, which forward-mode Hessian-vector products need."""

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: Tensor) -> Tensor:
        centered = x - x.mean(-1, keepdim=True)
        variance = centered.pow(2).mean(-1, keepdim=True)
        return centered / torch.sqrt(variance + 1e-5) * self.weight + self.bias


def plain_softmax(x: Tensor) -> Tensor:
    """Softmax from elementary ops (libtorch's softmax backward has no forward derivative)."""
    e = (x - x.amax(-1, keepdim=True).detach()).exp()
    return e / e.sum(-1, keepdim=True)


def plain_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    log_probs = logits - torch.logsumexp(logits, -1, keepdim=True)
    return -log_probs.gather(-1, target.unsqueeze(-1)).mean()


class MatmulEncoderLayer(nn.Module):
    """Post-norm transformer layer from elementary ops: attention as matmul
    + softmax, layer norm written out (twice differentiable, and forward-mode
    AD works through its backward pass)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1 = PlainLayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.norm2 = PlainLayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        attn = plain_softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5)
        mixed = (attn @ v).transpose(1, 2).reshape(b, n, d)
        x = self.norm1(x + self.drop(self.out(mixed)))
        return self.norm2(x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(x))))))

    def drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.dropout, self.training)


def encoder(d: int, heads: int, attention: str, dropout: float) -> nn.Module:
    if attention == "matmul":
        return MatmulEncoderLayer(d, heads, 2 * d, dropout)
    return nn.TransformerEncoderLayer(
        d, heads, 2 * d, dropout=dropout, activation="gelu", batch_first=True
    )


class PullWX(nn.Module):
    """`w_x` pulled towards 1: under `g`, its name `g.w_x` reads as `g_w.x`
    does (PullX under `g_w`) once dots become underscores."""

    def __init__(self):
        super().__init__()
        self.w_x = nn.Parameter(torch.zeros(4))

    def forward(self) -> Tensor:
        return (self.w_x - 1.0).pow(2).sum()


class PullX(nn.Module):
    """`x` pulled towards −1 (see PullWX)."""

    def __init__(self):
        super().__init__()
        self.x = nn.Parameter(torch.zeros(4))

    def forward(self) -> Tensor:
        return (self.x + 1.0).pow(2).sum()


class NoPenalty(nn.Module):
    def forward(self) -> Tensor:
        return torch.zeros(())


class TwoStream(nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, attention: str = "sdpa", dropout: float = 0.0,
                 tie_embeddings: bool = False, freeze_positions: bool = False, unused_head: bool = False,
                 sometimes_head: bool = False, colliding_names: bool = False):
        super().__init__()
        self.video_proj = nn.Linear(FEATURES, d)
        self.video_pos = nn.Parameter(torch.randn(FRAMES, d) * 0.02)
        self.video_enc = encoder(d, heads, attention, dropout)
        self.text_emb = nn.Embedding(VOCAB + 1, d)
        self.text_pos = nn.Parameter(torch.randn(WORDS, d) * 0.02)
        self.text_enc = encoder(d, heads, attention, dropout)
        self.stream_type = nn.Parameter(torch.randn(2, d) * 0.02)
        self.cross_enc = encoder(d, heads, attention, dropout)
        # BatchNorm keeps running statistics: buffers that checkpoints must hold.
        self.video_norm = nn.BatchNorm1d(d)
        self.align_head = nn.Linear(d, 1)
        # Weight tying: the MLM head predicts over the embedding's rows (the
        # vocabulary and the mask token, which gets a logit of its own) with
        # the embedding's matrix.
        self.mlm_head = nn.Linear(d, VOCAB + 1 if tie_embeddings else VOCAB)
        if tie_embeddings:
            self.mlm_head.weight = self.text_emb.weight
        if freeze_positions:
            # Parameters a fine-tuning run must leave alone.
            self.video_pos.requires_grad_(False)
            self.text_pos.requires_grad_(False)
        self.mfm_head = nn.Linear(d, FEATURES)
        if unused_head:
            # A head no loss uses (a probe kept from pretraining): no
            # gradient reaches it, so a PyTorch loop never updates it.
            self.probe_head = nn.Linear(d, 3)
        self.scramble_head = nn.Linear(d, 8)
        # A head `scramble` uses on some batches only (those whose first
        # clip's label is a multiple of 3): on the others no gradient
        # reaches it, and a PyTorch loop's optimizer skips it for that step.
        self.sometimes = sometimes_head
        self.sometimes_head = nn.Linear(d, 8) if sometimes_head else nn.Identity()
        # Two parameters whose names read alike with underscores for dots
        # (`g.w_x`, `g_w.x`), pulled apart by `scramble`.
        self.colliding = colliding_names
        self.g = PullWX() if colliding_names else NoPenalty()
        self.g_w = PullX() if colliding_names else NoPenalty()
        self.log_temperature = nn.Parameter(torch.tensor(2.3))
        self.mask_token = MASK_TOKEN
        self.frames = FRAMES
        # Elementary ops throughout (the matmul variant), or the stock ones.
        self.plain = attention == "matmul"
        if self.plain:
            # BatchNorm's backward has no forward derivative either.
            self.video_norm = nn.Identity()

    def cross_entropy(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.plain:
            return plain_cross_entropy(logits, target)
        return F.cross_entropy(logits, target)

    def encode_video(self, frames: Tensor) -> Tensor:
        return self.video_enc(self.video_proj(frames) + self.video_pos)

    def encode_text(self, tokens: Tensor) -> Tensor:
        return self.text_enc(self.text_emb(tokens) + self.text_pos)

    def cross(self, video: Tensor, text: Tensor) -> Tensor:
        both = torch.cat([video + self.stream_type[0], text + self.stream_type[1]], 1)
        return self.cross_enc(both)

    def retrieval(self, video: Tensor, text: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Symmetric InfoNCE; also the logits and the pooled video embedding."""
        v = F.normalize(self.video_norm(video.mean(1)), dim=-1)
        t = F.normalize(text.mean(1), dim=-1)
        logits = t @ v.t() * self.log_temperature.exp()
        target = torch.arange(logits.shape[0], device=video.device)
        loss = 0.5 * (self.cross_entropy(logits, target) + self.cross_entropy(logits.t(), target))
        return loss, logits, v

    @torch.jit.export
    def loss(self, batch: Dict[str, Tensor], name: str) -> Tensor:
        """Optional in the contract: one loss, the same value as forward(batch)[name].
        meltr-tui's meta step needs only the primary on its validation batch, and
        retrieval needs only the two single-stream encoders."""
        if name == "retrieval":
            video = self.encode_video(batch["video"])
            text = self.encode_text(batch["text"])
            return self.retrieval(video, text)[0]
        return self.forward(batch)[name]

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        frames = batch["video"]
        tokens = batch["text"]
        word_mask = batch["word_mask"]
        frame_mask = batch["frame_mask"]
        b = frames.shape[0]

        video = self.encode_video(frames)
        text = self.encode_text(tokens)
        retrieval, logits, v = self.retrieval(video, text)
        target = torch.arange(b, device=frames.device)

        # Matching: true pairs vs each caption paired with the next clip.
        pos = self.cross(video, text)[:, 0]
        neg = self.cross(video.roll(1, 0), text)[:, 0]
        scores = self.align_head(torch.cat([pos, neg], 0)).squeeze(-1)
        labels = torch.cat([torch.ones(b), torch.zeros(b)]).to(scores)
        align = F.binary_cross_entropy_with_logits(scores, labels)

        # MLM and MFM: the cross encoder sees masked tokens / zeroed frames.
        masked_tokens = torch.where(word_mask, torch.full_like(tokens, self.mask_token), tokens)
        masked_frames = frames * (~frame_mask).unsqueeze(-1).to(frames)
        joint = self.cross(self.encode_video(masked_frames), self.encode_text(masked_tokens))
        # Means over the masked positions, by weighting (no boolean indexing,
        # whose backward forward-mode AD cannot run through).
        word_weight = word_mask.to(frames)
        word_logits = self.mlm_head(joint[:, self.frames :])
        log_probs = word_logits - torch.logsumexp(word_logits, -1, keepdim=True)
        word_nll = -log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        mlm = (word_nll * word_weight).sum() / word_weight.sum()
        frame_weight = frame_mask.to(frames).unsqueeze(-1)
        frame_error = (self.mfm_head(joint[:, : self.frames]) - frames).pow(2) * frame_weight
        mfm = frame_error.sum() / (frame_weight.sum() * frames.shape[-1])

        scramble = self.cross_entropy(self.scramble_head(v), batch["scramble"])
        if self.sometimes and int(batch["scramble"][0]) % 3 == 0:
            scramble = scramble + 0.5 * self.cross_entropy(self.sometimes_head(v), batch["scramble"])
        if self.colliding:
            scramble = scramble + 0.1 * (self.g() + self.g_w())

        with torch.no_grad():
            r1 = (logits.argmax(1) == target).to(frames).mean() * 100.0
            hits = (word_logits.argmax(-1) == tokens).to(frames) * word_weight
            mlm_acc = hits.sum() / word_weight.sum() * 100.0
        return {
            "retrieval": retrieval,
            "align": align,
            "mlm": mlm,
            "mfm": mfm,
            "scramble": scramble,
            "metric/R@1": r1,
            "metric/mlm_acc": mlm_acc,
        }


def make_split(samples: int, generator: torch.Generator, shift: float) -> Dict[str, Tensor]:
    """Clips and captions driven by the same latent events, plus noise."""
    event_feature = torch.randn(EVENTS, FEATURES, generator=torch.Generator().manual_seed(7))
    event_word = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(8))[:EVENTS]
    events = torch.randint(0, EVENTS, (samples, 4), generator=generator)
    # Each of the 4 events spans 2 frames and 2 words.
    frame_events = events.repeat_interleave(2, 1)
    video = event_feature[frame_events] + (0.6 + shift) * torch.randn(
        samples, FRAMES, FEATURES, generator=generator
    )
    text = event_word[events].repeat_interleave(2, 1)
    filler = torch.randint(0, VOCAB, (samples, WORDS), generator=generator)
    text = torch.where(torch.rand(samples, WORDS, generator=generator) < 0.2, filler, text)
    word_mask = torch.rand(samples, WORDS, generator=generator) < 0.25
    word_mask[:, 0] = True  # at least one masked word per caption
    frame_mask = torch.rand(samples, FRAMES, generator=generator) < 0.25
    frame_mask[:, -1] = True
    scramble = torch.randint(0, 8, (samples,), generator=generator)
    return {
        "video": video.float(),
        "text": text.long(),
        "word_mask": word_mask,
        "frame_mask": frame_mask,
        "scramble": scramble.long(),
    }


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL"}


def write_safetensors(path: str, tensors: Dict[str, Tensor]) -> None:
    """The safetensors format: 8-byte header length, JSON header, raw data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = SAFETENSORS_DTYPES[t.dtype]
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        data = ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)
    os.replace(path + ".tmp", path)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=here, help="output folder (default: %(default)s)")
    parser.add_argument("--attention", choices=["sdpa", "matmul"], default="sdpa")
    parser.add_argument("--train", type=int, default=1024, help="training samples")
    parser.add_argument("--val", type=int, default=256, help="validation samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout in every encoder layer (default 0: no randomness in forward)")
    parser.add_argument("--tie-embeddings", action="store_true",
                        help="the MLM head uses the text embedding's matrix (one parameter, two modules)")
    parser.add_argument("--freeze-positions", action="store_true",
                        help="the position embeddings do not require grad (left untrained)")
    parser.add_argument("--unused-head", action="store_true",
                        help="add a head (probe_head) that no loss uses")
    parser.add_argument("--sometimes-head", action="store_true",
                        help="add a head (sometimes_head) that `scramble` uses on the batches whose first label is a multiple of 3")
    parser.add_argument("--colliding-names", action="store_true",
                        help="add parameters g.w_x and g_w.x, whose names read alike with underscores for dots")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = torch.jit.script(TwoStream(attention=args.attention, dropout=args.dropout,
                                       tie_embeddings=args.tie_embeddings,
                                       freeze_positions=args.freeze_positions,
                                       unused_head=args.unused_head,
                                       sometimes_head=args.sometimes_head,
                                       colliding_names=args.colliding_names))
    model.save(os.path.join(args.out, "model.pt"))
    generator = torch.Generator().manual_seed(args.seed + 1)
    write_safetensors(os.path.join(args.out, "train.safetensors"), make_split(args.train, generator, 0.0))
    write_safetensors(os.path.join(args.out, "val.safetensors"), make_split(args.val, generator, 0.0))
    print(f"wrote model.pt, train.safetensors, val.safetensors to {args.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
