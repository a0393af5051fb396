"""How easily a model is fooled: adversarial attacks and common corruptions, on its test split.

Attacks (adversarial.py) are written natively on `tf.GradientTape` (ART's KerasClassifier
breaks on Keras 3, Trusted-AI/adversarial-robustness-toolbox#2465; CleverHans is unmaintained):
untargeted, L-inf,
epsilon in units of the pixel range [0, 1] (0.3 = 76 of 255), as in the literature, on the
model's float path (models/paths.py: the pixels as floats, before the model's rescaling).
- FGSM (Goodfellow et al. 2015): one step of eps * sign(gradient of the loss).
- PGD (Madry et al. 2018): a random start in the eps-ball, `steps` steps of 2.5 eps / steps,
  each projected back into the ball and the pixel range.
Adversarial images are scored as floats (not rounded to 8 bits, which would weaken them).

Corruptions follow Hendrycks & Dietterich's ImageNet-C where they apply to small images, five
severities each: gaussian_noise (sigma 0.08..0.38 of the range), gaussian_blur (sigma scaled to
the image: 0.3..1.1 pixels at 28x28), contrast (0.4..0.05 of it kept), rotation (10..50 degrees;
not in ImageNet-C, the classic test for digits) and jpeg (quality 25..7).
"""

from __future__ import annotations

import io
import math

import numpy as np

from tfvision_cli.errors import UsageError

ATTACKS = ("fgsm", "pgd")
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast", "rotation", "jpeg")
_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
_BLUR = (0.3, 0.5, 0.7, 0.9, 1.1)  # pixels at 28x28, scaled with the image's side
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
_ROTATION = (10, 20, 30, 40, 50)
_JPEG = (25, 18, 15, 10, 7)


def pixel_model(model):
    """float pixels (0..255) -> probabilities, through the model's own rescaling."""
    from tfvision_cli.models.paths import float_path

    rest, stem = float_path(model)
    return lambda x, training=False: rest(stem(x), training=training)


def attack(
    forward,
    images: np.ndarray,
    labels: np.ndarray,
    kind: str,
    eps: float,
    steps: int = 10,
    seed: int = 0,
):
    """Adversarial float images (0..255) for a batch (adversarial.perturb)."""
    from tfvision_cli.tf_import import tf as import_tf
    from tfvision_cli.training.adversarial import perturb

    tf = import_tf()
    x0 = tf.convert_to_tensor(images.astype(np.float32))
    y = tf.convert_to_tensor(labels.astype(np.int32))
    return perturb(forward, x0, y, kind, eps, steps, seed)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 images with one corruption at severity 1..5."""
    from PIL import Image, ImageFilter

    s = severity - 1
    x = images.astype(np.float32)
    if name == "gaussian_noise":
        noise = np.random.default_rng(seed).normal(0, _NOISE[s] * 255, x.shape)
        return np.clip(x + noise, 0, 255).round().astype(np.uint8)
    if name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return np.clip((x - mean) * _CONTRAST[s] + mean, 0, 255).round().astype(np.uint8)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        if name == "gaussian_blur":
            im = im.filter(ImageFilter.GaussianBlur(_BLUR[s] * max(image.shape[:2]) / 28))
        elif name == "rotation":
            sign = 1 if i % 2 else -1
            im = im.rotate(sign * _ROTATION[s], resample=Image.BILINEAR)
        else:  # jpeg
            buffer = io.BytesIO()
            im.save(buffer, format="JPEG", quality=_JPEG[s])
            im = Image.open(io.BytesIO(buffer.getvalue()), formats=["JPEG"])
            im.load()
        arr = np.asarray(im)
        out[i] = arr[..., None] if image.shape[-1] == 1 else arr
    return out


def parse_list(text: str, known: tuple[str, ...], what: str) -> list[str]:
    from tfvision_cli.errors import did_you_mean

    names = [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in known:
            raise UsageError(
                f"unknown {what} {name!r}.{did_you_mean(name, known)} "
                f"Choose from: {', '.join(known)}"
            )
    return names


def parse_eps(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--eps takes numbers separated by commas, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values) or values[0] < 0 or values[-1] > 1:
        raise UsageError(f"--eps values must be in [0, 1] (a share of the pixel range), got {text}")
    return values


def robustness(
    predictor,
    images,
    labels,
    attacks,
    eps_values,
    steps,
    corruptions,
    batch_size: int = 256,
    on_progress=None,
) -> dict:
    """Clean accuracy, accuracy per attack and eps, per corruption and severity."""
    from tfvision_cli.analysis.explain import differentiable

    forward = pixel_model(differentiable(predictor))
    clean = float(np.mean(predictor.predict(images, batch_size).argmax(1) == labels))
    report = {"n": int(len(labels)), "clean_accuracy": clean, "attacks": [], "corruptions": []}
    for kind in attacks:
        for eps in eps_values:
            right = 0
            for i in range(0, len(labels), batch_size):
                x, y = images[i : i + batch_size], labels[i : i + batch_size]
                adv = attack(forward, x, y, kind, eps, steps, seed=i)
                right += int(np.sum(np.asarray(forward(adv)).argmax(1) == y))
            report["attacks"].append(
                {
                    "attack": kind,
                    "eps": eps,
                    "steps": steps if kind == "pgd" else 1,
                    "accuracy": right / len(labels),
                }
            )
            if on_progress:
                on_progress(report["attacks"][-1])
    if attacks:
        report["random_noise"] = [
            {"eps": eps, "accuracy": _noise_accuracy(forward, images, labels, eps, batch_size)}
            for eps in eps_values
            if eps > 0
        ]
        report["warnings"] = masking_signs(report)
    for name in corruptions:
        for severity in range(1, 6):
            corrupted = corrupt(images, name, severity)
            accuracy = float(np.mean(predictor.predict(corrupted, batch_size).argmax(1) == labels))
            report["corruptions"].append({"name": name, "severity": severity, "accuracy": accuracy})
            if on_progress:
                on_progress(report["corruptions"][-1])
    return report


def _noise_accuracy(forward, images, labels, eps: float, batch_size: int) -> float:
    """Accuracy under random signs of the same L-inf budget: what an attack must beat."""
    rng = np.random.default_rng(0)
    right = 0
    for i in range(0, len(labels), batch_size):
        x = images[i : i + batch_size].astype(np.float32)
        noisy = np.clip(x + eps * 255.0 * rng.choice([-1.0, 1.0], x.shape), 0, 255)
        right += int(
            np.sum(
                np.asarray(forward(noisy.astype(np.float32))).argmax(1)
                == labels[i : i + batch_size]
            )
        )
    return right / max(len(labels), 1)


# FGSM this much more accurate than PGD at the same eps is a "wide margin" (an FGSM-trained
# model's catastrophic overfitting: 0.97 against 0.00 on MNIST at eps 0.3, README).
WIDE_MARGIN = 0.5
ADVICE = "evaluate with a stronger attack before trusting it: PGD with more steps (--steps 100)"


def masking_signs(report: dict) -> list[str]:
    """The signs of gradient masking the numbers show (Athalye, Carlini & Wagner 2018; Carlini
    et al. 2019, "On Evaluating Adversarial Robustness"): accuracy that rises with eps, a
    one-step attack far weaker than the iterative one (or the iterative one weaker than the
    one-step), an attack that does worse than random noise of the same budget. Each is a
    sentence; none means none was seen, not that the model is robust."""
    tol = max(0.005, 3.0 / max(report["n"], 1))  # a few images either way is noise
    acc = {(a["attack"], a["eps"]): a["accuracy"] for a in report["attacks"]}
    noise = {r["eps"]: r["accuracy"] for r in report.get("random_noise", [])}
    signs = []
    for kind in sorted({k for k, _ in acc}):
        budgets = sorted(e for k, e in acc if k == kind)
        for low, high in zip(budgets, budgets[1:], strict=False):
            if acc[kind, high] > acc[kind, low] + tol:
                signs.append(
                    f"{kind}: accuracy rises from {acc[kind, low]:.3f} at eps {low:g} to "
                    f"{acc[kind, high]:.3f} at eps {high:g}; a larger budget cannot help a model"
                )
        for eps in budgets:
            if eps in noise and acc[kind, eps] > noise[eps] + tol:
                signs.append(
                    f"{kind} at eps {eps:g} leaves accuracy {acc[kind, eps]:.3f}, above random "
                    f"noise of the same budget ({noise[eps]:.3f}): the gradients mislead it"
                )
    for (kind, eps), fgsm in acc.items():
        pgd = acc.get(("pgd", eps)) if kind == "fgsm" else None
        if pgd is not None and fgsm > pgd + WIDE_MARGIN:
            signs.append(
                f"at eps {eps:g} FGSM leaves accuracy {fgsm:.3f} but PGD {pgd:.3f}: a one-step "
                "attack this much weaker than PGD is the mark of masked gradients"
            )
        elif pgd is not None and pgd > fgsm + tol:
            signs.append(
                f"at eps {eps:g} PGD leaves accuracy {pgd:.3f}, above FGSM's {fgsm:.3f}: the "
                "iterative attack should be the stronger one"
            )
    return [f"{s}. Possible gradient masking: {ADVICE}" for s in signs]
