"""The training augmentation, fast on a CPU: the original's random rotation, shift, shear, zoom and flip fused
into one OpenCV affine warp per image, plus the photometric changes of --augment camera and what a photo's
detector crop goes through for --augment photo."""

import functools
import math

import cv2
import numpy as np

from emotion.io.images import normalize_contrast
from emotion.io.lazy_import import LazyModule

tf = LazyModule("tensorflow")

ROTATION_DEGREES = 30  # "original", as the original's ImageDataGenerator: rotation up to 30 degrees,
SHIFT_FRACTION = 0.2  # width/height shift of 20 %,
SHEAR_DEGREES = 0.2  # shear_range 0.2 (ImageDataGenerator reads it as an angle in degrees),
ZOOM_FRACTION = 0.2  # zoom 80-120 %, horizontal flip, nearest fill
CONTRAST_FRACTION = 0.4  # "camera" adds to the above: contrast 60-140 %,
BRIGHTNESS_FRACTION = 0.15  # brightness shifts of up to 15 % of the grey range,
BLUR_SIGMA = 1.0  # Gaussian blur (sigma 0.5 to this, in pixels) on half the faces,
NOISE_LEVEL = 6.0  # and sensor noise of up to this standard deviation (grey levels)
LIGHT_GRADIENT = 0.3  # "photo" adds to "camera" (less its blur): side light, a ramp of up to 30 % of the grey range,
RESOLUTION_SHARE = 0.4  # on this share of the faces the detail of a smaller face: shrunk to a side of
RESOLUTION_SIDES = (20, 44)  # 20-44 pixels and resized back as predict resizes a small crop,
JPEG_SHARE = 0.5  # on this share JPEG coding,
JPEG_QUALITY = (25, 90)  # at quality 25-90; then the model's contrast normalisation again, as at inference
AUGMENTATIONS = ("original", "camera", "photo", "light", "none")  # --augment's choices; "light": a third of each
#                                                                   geometric range, no shear


def blur_images(images, sigmas):
    """Gaussian blur of each float32 (H, W, C) image with its own sigma (0: left as it is)."""
    out = images.copy()
    for image, sigma, target in zip(images, sigmas, out):
        if sigma > 0:
            target[...] = cv2.GaussianBlur(image, (0, 0), float(sigma), borderType=cv2.BORDER_REPLICATE).reshape(
                target.shape)
    return out


def degrade_images(images, sides, qualities, normalize):
    """Each float32 (H, W, C) face as a photo's crop reaches the model: shrunk to a side of `sides` pixels (0: kept)
    and resized back as prepare_image resizes, JPEG-coded at `qualities` (0: not), then normalize_contrast."""
    out = np.empty_like(images)
    height, width, channels = images.shape[1:]
    for image, side, quality, target in zip(images, sides, qualities, out):
        face = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if side > 0:
            small = cv2.resize(face, (int(side), int(side)), interpolation=cv2.INTER_AREA)
            face = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        if quality > 0:
            bgr = face if channels == 1 else cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
            coded = cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])[1],
                                 cv2.IMREAD_UNCHANGED)
            face = coded if channels == 1 else cv2.cvtColor(coded, cv2.COLOR_BGR2RGB)
        target[...] = normalize_contrast(face.reshape(image.shape), normalize)
    return out


def warp_images(images, matrices):
    """Affine warp of each image with OpenCV (bilinear, edge pixels repeated, as the original's "nearest" fill).

    images: float32 (B, H, W, C); matrices: (B, 2, 3), output pixel (x, y) reads input pixel M (x, y, 1).
    """
    out = np.empty_like(images)
    height, width = images.shape[1:3]
    for image, matrix, target in zip(images, matrices, out):
        cv2.warpAffine(image, matrix, (width, height), dst=target, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
    return out


class Augmentation:
    """The original's random rotation, shift, shear, zoom and horizontal flip, fused into one affine warp.

    One warp per image, by OpenCV's `warpAffine`, instead of one per Keras augmentation layer: far less CPU
    (docs/performance.md), which on 2 cores the network gets back. The randomness is stateless, drawn from a
    seed per batch, so batches can be augmented in parallel and still repeat exactly for the same --seed.
    """

    def __init__(self, rotation_degrees, shift_fraction, shear_degrees, zoom_fraction, flip=True, photometric=False,
                 photo=False, normalize="none"):
        self.rotation, self.shift = math.radians(rotation_degrees), shift_fraction
        self.shear, self.zoom, self.flip = math.radians(shear_degrees), zoom_fraction, flip
        self.photometric, self.photo, self.normalize = photometric, photo, normalize

    def matrices(self, count, height, width, seed):
        """(count, 2, 3) random warps; output pixel p reads input pixel A (p - centre) + centre + shift."""
        seeds = tf.random.experimental.stateless_split(seed, 7)

        def uniform(i, bound):
            return tf.random.stateless_uniform([count], seeds[i], -bound, bound)

        angle, shear = uniform(0, self.rotation), uniform(1, self.shear)
        zoom_x, zoom_y = 1 + uniform(2, self.zoom), 1 + uniform(3, self.zoom)  # independent, as the original
        shift_x, shift_y = uniform(4, self.shift) * width, uniform(5, self.shift) * height
        mirror = tf.where(tf.random.stateless_uniform([count], seeds[6]) < 0.5, -1.0, 1.0) if self.flip else 1.0
        # A = rotate . shear . zoom . mirror
        cos, sin = tf.cos(angle), tf.sin(angle)
        a0, a1 = cos * zoom_x * mirror, (-cos * tf.sin(shear) - sin * tf.cos(shear)) * zoom_y
        b0, b1 = sin * zoom_x * mirror, (-sin * tf.sin(shear) + cos * tf.cos(shear)) * zoom_y
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2, b2 = cx - a0 * cx - a1 * cy + shift_x, cy - b0 * cx - b1 * cy + shift_y
        return tf.reshape(tf.stack([a0, a1, a2, b0, b1, b2], axis=1), (-1, 2, 3))

    def __call__(self, images, seed):
        """images: float32 (B, H, W, C); seed: int64 pair. Same images and seed -> same output."""
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        matrices = self.matrices(tf.shape(images)[0], height, width, seed)
        warped = tf.ensure_shape(tf.numpy_function(warp_images, [images, matrices], tf.float32), images.shape)
        if not self.photometric:
            return warped
        changed = self.camera(warped, tf.random.experimental.stateless_fold_in(seed, 1), blur=not self.photo)
        return self.photograph(changed, tf.random.experimental.stateless_fold_in(seed, 2)) if self.photo else changed

    def camera(self, images, seed, blur=True):
        """What another camera does to a face: contrast, brightness, blur (half the faces; "photo" loses resolution
        instead, as the warp already softens a face more than predict's resizing of a photo does), sensor noise."""
        seeds = tf.random.experimental.stateless_split(seed, 6)
        count = tf.shape(images)[0]

        def uniform(i, low, high):
            return tf.random.stateless_uniform([count, 1, 1, 1], seeds[i], low, high)

        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * (1 + uniform(0, -CONTRAST_FRACTION, CONTRAST_FRACTION)) + mean
        images += uniform(1, -BRIGHTNESS_FRACTION, BRIGHTNESS_FRACTION) * 255
        sigmas = tf.where((uniform(2, 0, 1) < 0.5) | (not blur), 0.0, uniform(3, 0.5, BLUR_SIGMA))
        images = tf.ensure_shape(tf.numpy_function(blur_images, [images, tf.reshape(sigmas, [-1])], tf.float32),
                                 images.shape)
        noise = tf.random.stateless_normal(tf.shape(images), seeds[4]) * uniform(5, 0, NOISE_LEVEL)
        return tf.clip_by_value(images + noise, 0, 255)

    def photograph(self, images, seed):
        """What a detector's crop of a photo adds: side light, lost resolution, JPEG coding, and the model's
        contrast normalisation applied again, as prepare_image applies it to every face at inference."""
        seeds = tf.random.experimental.stateless_split(seed, 6)
        count, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]

        def uniform(i, low, high, shape=(count,)):
            return tf.random.stateless_uniform(shape, seeds[i], low, high)

        angle = uniform(0, 0.0, 2 * math.pi)[:, tf.newaxis, tf.newaxis, tf.newaxis]
        y = tf.linspace(-1.0, 1.0, height)[tf.newaxis, :, tf.newaxis, tf.newaxis]
        x = tf.linspace(-1.0, 1.0, width)[tf.newaxis, tf.newaxis, :, tf.newaxis]
        strength = uniform(1, -LIGHT_GRADIENT, LIGHT_GRADIENT)[:, tf.newaxis, tf.newaxis, tf.newaxis] * 255
        images = images + strength * (x * tf.cos(angle) + y * tf.sin(angle))
        sides = tf.where(uniform(2, 0.0, 1.0) < RESOLUTION_SHARE,
                         tf.floor(uniform(3, RESOLUTION_SIDES[0], RESOLUTION_SIDES[1] + 1)), 0.0)
        qualities = tf.where(uniform(4, 0.0, 1.0) < JPEG_SHARE, tf.floor(uniform(5, *JPEG_QUALITY)), 0.0)
        degrade = functools.partial(degrade_images, normalize=self.normalize)
        return tf.ensure_shape(tf.numpy_function(degrade, [images, sides, qualities], tf.float32), images.shape)


def make_augmentation(strength, normalize="none"):
    """The training augmentation (run in tf.data, never saved in the model), or None for "none". "original": the
    original's ranges; "light": a third of each, no shear; "camera": the original's plus photometric changes;
    "photo": "camera" plus what a photo's detector crop goes through, ending in the model's `normalize`."""
    if strength == "none":
        return None
    k = 1 / 3 if strength == "light" else 1
    return Augmentation(k * ROTATION_DEGREES, k * SHIFT_FRACTION, 0.0 if strength == "light" else SHEAR_DEGREES,
                        k * ZOOM_FRACTION, photometric=strength in ("camera", "photo"), photo=strength == "photo",
                        normalize=normalize)
