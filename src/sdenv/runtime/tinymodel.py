"""A tiny Stable Diffusion 3.5 pipeline made locally: same classes and layout as the real one.

``sdenv verify`` loads it with the deployment loader (``sdenv.runtime.generate``) to prove the whole
stack - tokenizers, text encoders, the SD3 transformer with qk_norm and dual attention, the
16-channel VAE, safetensors, FP8 transforms - works in this environment, without any hub access
and without gigabytes of weights. Everything here is built from scratch: the tokenizers are trained
on a small built-in corpus with the ``tokenizers`` library (a CLIP-style byte-level BPE with
``</w>`` word ends, a T5-style unigram model), the weights are seeded random.

Every linear layer of the transformer has in/out features that are multiples of 16, so torchao's
FP8 kernels can take all of them (``torch._scaled_mm`` needs that:
``docs/evidence.md#E-scaled-mm``).

Only the standard library at module level: torch, diffusers, transformers and tokenizers are
imported inside the functions (CLI discovery imports this module's importers).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Prompt-like sentences to train the tokenizers on; tokenizers need real text to learn merges.
_CORPUS = """\
a photograph of an astronaut riding a horse on the moon
a watercolor painting of a fox in a snowy forest at dawn
a cat holding a sign that says hello world
an oil painting of a lighthouse on a rocky coast during a storm
a close up photo of a red rose with water drops, macro lens
a futuristic city skyline at night with neon lights and flying cars
a bowl of ramen with a soft boiled egg, studio lighting
portrait of an old fisherman with a grey beard, dramatic light
a small wooden cabin by a lake surrounded by mountains in autumn
a robot reading a book in a cozy library, digital art
a sailing ship on a calm sea under a starry sky
an isometric illustration of a tiny island with palm trees
a dog wearing sunglasses sitting in a convertible car
a plate of fresh sushi on a black slate, top view
a dragon made of clouds flying over a green valley
a cup of coffee next to a laptop on a wooden desk, morning light
a mountain road winding through a pine forest, aerial view
a vintage bicycle leaning against a yellow wall in a narrow street
a bright blue butterfly resting on a purple flower
a snowy village with warm lights in the windows at christmas
the quick brown fox jumps over the lazy dog
high quality, detailed, sharp focus, 4k, trending, cinematic, 35mm, f/1.8
"""

CLIP_MAX_LENGTH = 77
CLIP_VOCAB_SIZE = 640
T5_VOCAB_SIZE = 256


@dataclass(frozen=True)
class TinySpec:
    """The shapes of the tiny pipeline: small, but with SD3.5's structure."""

    sample_size: int = 32  # latent side; the image side is sample_size * 2 (two VAE blocks)
    num_layers: int = 2
    heads: int = 4
    head_dim: int = 16  # inner dim 64
    clip_hidden: int = 32
    clip_projection: int = 32  # two encoders -> pooled 64
    t5_dim: int = 64  # joint attention dim
    seed: int = 0

    @property
    def image_size(self) -> int:
        return self.sample_size * 2


def _corpus() -> list[str]:
    return [line for line in _CORPUS.splitlines() if line.strip()]


def _clip_tokenizer_files(dest: Path) -> int:
    """vocab.json + merges.txt of a byte-level BPE with CLIP's ``</w>`` end-of-word marks."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=CLIP_VOCAB_SIZE,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        # Every byte-level character, so no input byte is unknown (CLIP's byte encoder maps bytes
        # to these printable characters before BPE).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    vocab: dict[str, int] = tok.get_vocab()
    # CLIP's BPE looks up "c</w>" for a word ending in c: give every single character that form.
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch + "</w>", len(vocab))
    dest.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(dest))  # writes merges.txt (and a vocab.json we replace)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = (dest / "merges.txt").read_text(encoding="utf-8").splitlines()
    if not merges or not merges[0].startswith("#version"):
        # transformers' CLIP tokenizer skips the first line of merges.txt (the version header).
        (dest / "merges.txt").write_text(
            "\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8"
        )
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": CLIP_MAX_LENGTH,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        ),
        encoding="utf-8",
    )
    return len(vocab)


def _t5_tokenizer_files(dest: Path) -> None:
    """tokenizer.json: a sentencepiece-style unigram model, T5's special ids (pad 0, eos 1)."""
    from tokenizers import SentencePieceUnigramTokenizer, processors

    tok = SentencePieceUnigramTokenizer()
    tok.train_from_iterator(
        _corpus(),
        vocab_size=T5_VOCAB_SIZE,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    # T5 appends </s> to every sequence.
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": 512,
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "extra_ids": 0,
            }
        ),
        encoding="utf-8",
    )


def quiet_libraries() -> None:
    """No progress bars or notices from diffusers/transformers: output is sdenv's to make."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for log in (dlog, tlog):
        log.set_verbosity_error()
        log.disable_progress_bar()


def _tokenizers(workdir: Path | None) -> tuple[Any, Any, Any]:
    """Two CLIP tokenizers and a T5 one, trained here on a tiny vocabulary (no hub)."""
    import transformers

    T: Any = transformers  # partial annotations: use it through Any rather than sprinkle ignores
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        clip_dir, t5_dir = Path(tmp) / "clip", Path(tmp) / "t5"
        _clip_tokenizer_files(clip_dir)
        _t5_tokenizer_files(t5_dir)
        # from_pretrained on the files works the same on transformers 4.x and 5.x.
        return (
            T.CLIPTokenizer.from_pretrained(str(clip_dir)),
            T.CLIPTokenizer.from_pretrained(str(clip_dir)),
            T.T5TokenizerFast.from_pretrained(str(t5_dir)),
        )


def _text_encoders(spec: TinySpec, clip_tok: Any, t5_tok: Any) -> tuple[Any, Any, Any]:
    """Two CLIP text encoders with projection and a T5 encoder, seeded."""
    import torch
    import transformers

    T: Any = transformers
    bos = clip_tok.convert_tokens_to_ids("<|startoftext|>")
    eos = clip_tok.convert_tokens_to_ids("<|endoftext|>")

    def clip(seed: int) -> Any:
        torch.manual_seed(seed)
        cfg = T.CLIPTextConfig(
            vocab_size=len(clip_tok),
            hidden_size=spec.clip_hidden,
            intermediate_size=spec.clip_hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=spec.clip_projection,
            hidden_act="gelu",
            bos_token_id=bos,
            eos_token_id=eos,  # not 2: pooling then looks for this id (transformers >= 4.30)
            pad_token_id=eos,
        )
        return T.CLIPTextModelWithProjection(cfg)

    text_encoder, text_encoder_2 = clip(spec.seed + 1), clip(spec.seed + 2)
    torch.manual_seed(spec.seed + 3)
    text_encoder_3 = T.T5EncoderModel(
        T.T5Config(
            vocab_size=len(t5_tok),
            d_model=spec.t5_dim,
            d_kv=16,
            d_ff=spec.t5_dim * 2,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    return text_encoder, text_encoder_2, text_encoder_3


def _transformer_and_vae(spec: TinySpec) -> tuple[Any, Any]:
    """The SD3.5-shaped transformer (dual attention block, RMS qk-norm) and SD3's VAE, seeded."""
    import diffusers
    import torch

    D: Any = diffusers
    torch.manual_seed(spec.seed + 4)
    transformer = D.SD3Transformer2DModel(
        sample_size=spec.sample_size,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=spec.num_layers,
        attention_head_dim=spec.head_dim,
        num_attention_heads=spec.heads,
        joint_attention_dim=spec.t5_dim,
        caption_projection_dim=spec.heads * spec.head_dim,
        pooled_projection_dim=2 * spec.clip_projection,
        pos_embed_max_size=spec.sample_size,
        dual_attention_layers=(0,),  # SD3.5 Medium's MMDiT-X block
        qk_norm="rms_norm",  # SD3.5's query/key RMS norm
    )
    torch.manual_seed(spec.seed + 5)
    vae = D.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=32,
        sample_size=spec.image_size,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.5305,  # SD3's VAE constants
        shift_factor=0.0609,
    )
    return transformer, vae


def build_pipeline(spec: TinySpec = TinySpec(), workdir: Path | None = None) -> Any:
    """A ``StableDiffusion3Pipeline`` with seeded random weights and freshly trained tokenizers."""
    import diffusers

    D: Any = diffusers
    clip_tok, clip_tok_2, t5_tok = _tokenizers(workdir)
    text_encoder, text_encoder_2, text_encoder_3 = _text_encoders(spec, clip_tok, t5_tok)
    transformer, vae = _transformer_and_vae(spec)
    return D.StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=D.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tok,
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tok_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tok,
    )


def make_tiny_model(dest: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write the tiny pipeline to ``dest`` in diffusers layout, weights as bf16 safetensors.

    Written into a sibling temp directory and renamed, so ``dest`` is complete or absent.
    """
    import shutil

    import torch

    quiet_libraries()
    pipe = build_pipeline(spec, workdir=dest.parent if dest.parent.exists() else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        pipe.to(torch.bfloat16)  # shipped SD3.5 checkpoints are 16-bit too
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    """``python -m sdenv.runtime.tinymodel DEST``: write the tiny pipeline (boxes without sdenv)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sdenv.runtime.tinymodel DEST", file=sys.stderr)
        return 2
    print(make_tiny_model(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
