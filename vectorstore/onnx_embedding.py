"""Sentence embeddings with ONNX Runtime, from an int8 model exported and quantised locally from the
shipped sentence-transformers folder on first use (no download, no optimum) and cached on disk."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from vectorstore.embedding import default_model_path

log = logging.getLogger(__name__)

# The pins of requirements.lock, named in the error when a package is missing.
PINS = {"onnxruntime": "onnxruntime==1.32.0", "onnx": "onnx==1.23.2", "tokenizers": "tokenizers==0.23.3"}

MODEL_FILE = "model-int8.onnx"
# Everything that shapes the exported file; part of the cache key, so changing it re-exports.
# The TorchScript exporter (dynamo=False) needs no onnxscript; eager attention traces to plain ops
# that hold for any batch size and length. Weights of the linear layers are quantised per output
# channel (per tensor loses 6% cosine); on SciFact (bench/results/embedding_quality.json, key
# onnx_recipe_study) unsigned int8 weights kept vectors closer to fp32 than signed (mean cosine
# 0.9950 vs 0.9938) and leaving each layer's FFN output projection in fp32 halved the rest of the
# gap (0.9978; nDCG@10 0.6499 vs fp32 0.6451, signed-everything 0.6418), at no speed cost
# measurable on the 2-core AVX2 machine. The embedding table stays fp32: quantising its Gather
# saves 36 MB of file, no time, and costs accuracy.
RECIPE: dict[str, Any] = {
    "version": 1,
    "exporter": "torch.onnx.export(dynamo=False)",
    "opset": 17,
    "attention": "eager",
    "quantization": "dynamic",
    "weight_type": "QUInt8",
    "per_channel": True,
    "reduce_range": False,
    "op_types": ["MatMul"],
    # MatMul nodes kept in fp32 (regex on the exported node names): the FFN output projections.
    "exclude": r"/layer\.\d+/output/dense/MatMul$",
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_POOLING_MODES = (
    "cls_token",
    "max_tokens",
    "mean_tokens",
    "mean_sqrt_len_tokens",
)  # sentence-transformers' order


def _require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"embedding.backend onnx-int8 needs the `{package}` package: "
            f"install it with `pip install {PINS[package]}` or choose backend torch-fp32"
        )


def _model_name(model_path: Path) -> str:
    return model_path.name if model_path.name != "model" else model_path.parent.name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"embedding model file {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"embedding model file {path} is not a JSON object")
    return data


class OnnxEmbedder:
    """Embeds passages and queries with an int8 ONNX Runtime copy of a sentence-transformers model.

    The copy is made from the model folder on first use (torch.onnx.export, then
    onnxruntime.quantization.quantize_dynamic) into ``cache_dir/<model>-<key>/model-int8.onnx``,
    where the key hashes the weights file and RECIPE; later runs reuse it. Text is tokenised with
    the folder's tokenizer.json, cut at the model's max_seq_length, pooled as its 1_Pooling config
    says and L2-normalised, like SentenceTransformer.encode(normalize_embeddings=True).
    Each text is run on its own (see embed_documents), so its vector never depends on the other
    texts of the call; there is no batch size.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        cache_dir: Path | None = None,
        threads: int = 0,
    ) -> None:
        for package in ("onnxruntime", "onnx", "tokenizers"):
            _require(package)
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(
                f"embedding model folder {self.model_path} has no config.json: "
                "point embedding.model_path at a sentence-transformers model folder"
            )
        if not (self.model_path / "tokenizer.json").is_file():
            raise ConfigError(
                f"embedding model folder {self.model_path} has no tokenizer.json, which "
                "backend onnx-int8 needs: choose backend torch-fp32 for this model"
            )
        self.model_id = f"{_model_name(self.model_path)}-onnx-int8"
        self.cache_dir = Path(cache_dir) if cache_dir else _user_cache()
        self.threads = threads
        self.max_seq_length, self.do_lower_case = self._sentence_bert_config()
        self._pooling_modes, self._word_dimension = self._pooling_config()
        self._key: str | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()
        self._lock = threading.Lock()

    # -- model folder ------------------------------------------------------------------------------

    def _sentence_bert_config(self) -> tuple[int, bool]:
        path = self.model_path / "sentence_bert_config.json"
        config = _read_json(path) if path.is_file() else {}
        max_seq = config.get("max_seq_length")
        if max_seq is None:  # sentence-transformers falls back to the model's position limit
            model_config = _read_json(self.model_path / "config.json")
            max_seq = model_config.get("max_position_embeddings", 512)
        return int(max_seq), bool(config.get("do_lower_case", False))

    def _pooling_config(self) -> tuple[list[str], int]:
        folder = "1_Pooling"
        modules_path = self.model_path / "modules.json"
        if modules_path.is_file():
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
            folder = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), folder)
        config = _read_json(self.model_path / folder / "config.json")
        unsupported = [
            key
            for key, value in config.items()
            if key.startswith("pooling_mode_") and value and key[len("pooling_mode_") :] not in _POOLING_MODES
        ]
        if unsupported:
            raise ConfigError(
                f"{self.model_path / folder / 'config.json'} asks for {', '.join(unsupported)}, which "
                "backend onnx-int8 does not implement: choose backend torch-fp32 for this model"
            )
        modes = [mode for mode in _POOLING_MODES if config.get(f"pooling_mode_{mode}")]
        if not modes:
            raise ConfigError(f"{self.model_path / folder / 'config.json'} enables no pooling mode")
        return modes, int(config["word_embedding_dimension"])

    @property
    def dimension(self) -> int:
        return self._word_dimension * len(self._pooling_modes)

    # -- the exported model ------------------------------------------------------------------------

    def _weights_file(self) -> Path:
        for name in _WEIGHT_FILES:
            if (self.model_path / name).is_file():
                return self.model_path / name
        raise ConfigError(f"embedding model folder {self.model_path} has none of {', '.join(_WEIGHT_FILES)}")

    def cache_key(self) -> str:
        """Short hash of the weights, the model config and RECIPE: what the export depends on."""
        if self._key is not None:
            return self._key
        digest = hashlib.sha256()
        with self._weights_file().open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        digest.update((self.model_path / "config.json").read_bytes())
        digest.update(json.dumps(RECIPE, sort_keys=True).encode())
        self._key = digest.hexdigest()[:12]
        return self._key

    @property
    def onnx_path(self) -> Path:
        """Where the int8 model is (or will be): cache_dir/<model>-<key>/model-int8.onnx."""
        return self.cache_dir / f"{_model_name(self.model_path)}-{self.cache_key()}" / MODEL_FILE

    def ensure_exported(self) -> Path:
        """Export and quantise the model unless a finished copy is already in the cache.

        An exclusive lock on a file beside the copy keeps two processes from exporting at once;
        the copy is written under a temporary name and renamed, so a reader never sees half a file.
        """
        target = self.onnx_path
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the model cache {target.parent}: {exc}; set embedding.cache_dir "
                "to a writable folder"
            ) from exc
        import fcntl

        with (target.parent / ".export.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if target.is_file():  # another process exported it while we waited
                return target
            started = time.perf_counter()
            # An operator on a fresh install sees the first ingest or web UI start pause: say why.
            log.info(
                "embedding backend onnx-int8: exporting %s to an int8 ONNX model in %s; this happens "
                "once per model (about 5-15 s on 2 cores) and later runs reuse it",
                self.model_path,
                target.parent,
            )
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
                fp32 = Path(tmp) / "model-fp32.onnx"
                int8 = Path(tmp) / MODEL_FILE
                self._export_fp32(fp32)
                self._quantize(fp32, int8)
                info = {
                    "source": str(self.model_path),
                    "weights": self._weights_file().name,
                    "recipe": RECIPE,
                    "export_seconds": round(time.perf_counter() - started, 1),
                    "fp32_bytes": fp32.stat().st_size,
                    "int8_bytes": int8.stat().st_size,
                    "versions": _versions(),
                }
                (Path(tmp) / "export.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
                os.replace(Path(tmp) / "export.json", target.parent / "export.json")
                os.replace(int8, target)
            log.info("exported %s in %.1f s (kept for later runs)", target, time.perf_counter() - started)
        return target

    def _export_fp32(self, path: Path) -> None:
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(
            str(self.model_path), local_files_only=True, attn_implementation=RECIPE["attention"]
        ).eval()

        class LastHiddenState(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        # Two rows, one padded: a trace from an all-ones mask would let the model drop the mask.
        ids = torch.full((2, 8), 1000, dtype=torch.long)
        mask = torch.ones((2, 8), dtype=torch.long)
        mask[1, 5:] = 0
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
        with torch.no_grad(), warnings.catch_warnings():
            # The legacy exporter's deprecation notice and tracer warnings about shape checks that
            # are constant for an encoder; the tests compare the export with torch on many shapes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState(model),
                (ids, mask, torch.zeros_like(ids)),
                str(path),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=RECIPE["opset"],
                do_constant_folding=True,
                dynamo=False,
            )

    def _quantize(self, source: Path, target: Path) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        graph = onnx.load(str(source), load_external_data=False).graph
        pattern = re.compile(RECIPE["exclude"]) if RECIPE["exclude"] else None
        excluded = [
            n.name for n in graph.node if pattern and n.op_type == "MatMul" and pattern.search(n.name)
        ]
        layers = int(_read_json(self.model_path / "config.json").get("num_hidden_layers", 0))
        if pattern and len(excluded) != layers:
            # The exporter named the nodes differently: quantising everything would silently lose
            # the accuracy the exclusion is there for.
            raise RuntimeError(
                f"ONNX export: expected {layers} MatMul nodes matching {RECIPE['exclude']!r}, "
                f"found {len(excluded)}; the exporter's node names changed"
            )
        with _quiet_quantizer():
            quantize_dynamic(
                str(source),
                str(target),
                op_types_to_quantize=RECIPE["op_types"],
                per_channel=RECIPE["per_channel"],
                reduce_range=RECIPE["reduce_range"],
                weight_type=getattr(QuantType, RECIPE["weight_type"]),
                nodes_to_exclude=excluded,
            )

    # -- running it --------------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                if hasattr(ort, "disable_telemetry_events"):
                    ort.disable_telemetry_events()
                path = self.ensure_exported()
                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                options.log_severity_level = 3  # errors only
                # CPU only: the wheel also lists an Azure provider, which is a remote endpoint.
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
                tokenizer.no_padding()  # each text runs alone: nothing to pad
                tokenizer.enable_truncation(max_length=self.max_seq_length)
                self._input_names = {i.name for i in session.get_inputs()}
                self._tokenizer, self._session = tokenizer, session
            return self._session, self._tokenizer

    def _run(self, session: Any, encoding: Any) -> np.ndarray:
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
        }
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})[0]
        return self._pool(hidden.astype(np.float32, copy=False), feeds["attention_mask"])

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        weights = mask[..., None].astype(np.float32)
        counts = np.clip(weights.sum(axis=1), 1e-9, None)
        parts = []
        for mode in self._pooling_modes:
            if mode == "cls_token":
                parts.append(hidden[:, 0])
            elif mode == "max_tokens":
                parts.append(np.where(weights > 0, hidden, -1e9).max(axis=1))
            elif mode == "mean_tokens":
                parts.append((hidden * weights).sum(axis=1) / counts)
            else:  # mean_sqrt_len_tokens
                parts.append((hidden * weights).sum(axis=1) / np.sqrt(counts))
        pooled = np.concatenate(parts, axis=1)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        normalised: np.ndarray = pooled / norms
        return normalised

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        # As sentence-transformers' Transformer module does before tokenising.
        cleaned = [str(t).strip() for t in texts]
        return [t.lower() for t in cleaned] if self.do_lower_case else cleaned

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        session, tokenizer = self._load()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # One text per run, never a padded batch: the int8 MatMuls quantise their input with one
        # scale for the whole tensor, so in a batch a passage's vector would depend on its
        # neighbours and on the padding (a 1-token text fell from cosine 0.986 to 0.969 to fp32).
        for row, encoding in enumerate(tokenizer.encode_batch(self._prepare(texts))):
            out[row] = self._run(session, encoding)[0]
        return out.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """quantize_dynamic logs, on the root logger, a hint to pre-process the model that does not
    apply to a transformer exported with constant folding; keep it out of operators' logs."""
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


def _user_cache() -> Path:
    # Not the shared temp folder: another local user could plant a model there.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "enclave" / "models"


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in ("torch", "transformers", "onnx", "onnxruntime"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
