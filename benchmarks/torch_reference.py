"""PyTorch reference of the official pix2pix / CycleGAN networks and training steps.

Written from the facts in ``shared/reference/official-pytorch.md`` (no code taken from the
official junyanz/pytorch-CycleGAN-and-pix2pix repository). It exists for two purposes:

* benchmarks: time the official training iteration on this machine (``benchmarks/torch_step.py``);
* tests: build modules whose ``state_dict`` keys, shapes and layer order are exactly those of the
  official checkpoints (``*_net_G.pth`` etc.), so .pth -> Flax converters can be checked against a
  real PyTorch forward pass.

What is matched on purpose:

* attribute names and ``nn.Sequential`` child indices (hence the state_dict keys), e.g.
  ``model.model.1.model.3.model.1.weight`` for the U-Net, ``model.10.conv_block.1.weight`` for the
  ResNet generator, ``model.{0,2,5,8,11}`` for the PatchGAN, ``net.{0,2,3,5}`` for the PixelGAN;
* the bias rule (conv bias only when the norm is InstanceNorm2d, except the always-biased layers:
  D first and last conv, PixelGAN first conv, ResNet final 7x7 conv, U-Net outermost ConvTranspose);
* in-place LeakyReLU/ReLU where the official code uses them (numerically irrelevant, but it keeps
  the memory/time profile of the official step);
* the order in which layers are created and initialised (construction inside-out for the U-Net,
  ``Module.apply`` post-order for the init), so a given torch seed consumes the RNG the same way;
* the exact update order of ``optimize_parameters`` for both models.

Everything runs on whatever device the tensors are on; nothing here needs a GPU.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import init

__all__ = [
    "Identity",
    "get_norm_layer",
    "uses_bias",
    "init_weights",
    "UnetSkipConnectionBlock",
    "UnetGenerator",
    "ResnetBlock",
    "ResnetGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "define_G",
    "define_D",
    "GANLoss",
    "ImagePool",
    "set_requires_grad",
    "Pix2PixStep",
    "CycleGANStep",
    "param_count",
    "buffer_count",
]


# --------------------------------------------------------------------------------------------
# Norm layers and the bias rule
# --------------------------------------------------------------------------------------------
class Identity(nn.Module):
    """Stand-in for ``norm='none'``: no parameters, no buffers, returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


NormFactory = Callable[[int], nn.Module]


def get_norm_layer(norm: str = "instance") -> NormFactory:
    """Return a factory ``num_features -> nn.Module`` for the official ``--norm`` values.

    batch:    BatchNorm2d(affine=True, track_running_stats=True), eps 1e-5, momentum 0.1
    instance: InstanceNorm2d(affine=False, track_running_stats=False), eps 1e-5
    none:     Identity
    """
    if norm == "batch":
        def factory(c: int) -> nn.Module:
            return nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    elif norm == "instance":
        def factory(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    elif norm == "none":
        def factory(c: int) -> nn.Module:
            return Identity()
    else:
        raise NotImplementedError(f"normalization layer [{norm}] is not supported")
    factory.norm_name = norm  # type: ignore[attr-defined]
    return factory


def uses_bias(norm: str) -> bool:
    """The official rule: convolutions carry a bias only when the norm is InstanceNorm2d.

    Note the quirk that ``norm='none'`` therefore gives bias-free convolutions too.
    """
    return norm == "instance"


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------
def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Official-style init, applied with ``Module.apply`` (children first, post-order).

    Conv2d / ConvTranspose2d / Linear weights: normal N(0, gain) | xavier_normal(gain) |
    kaiming_normal(a=0, fan_in; gain ignored) | orthogonal(gain); biases 0.
    BatchNorm2d: weight N(1, gain), bias 0. InstanceNorm2d (affine=False) has nothing to init.
    """

    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight.data, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight.data, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                init.orthogonal_(m.weight.data, gain=init_gain)
            else:
                raise NotImplementedError(f"initialization method [{init_type}] is not implemented")
            if m.bias is not None:
                init.constant_(m.bias.data, 0.0)
        elif type(m) is nn.BatchNorm2d:  # the official name match excludes SyncBatchNorm
            init.normal_(m.weight.data, 1.0, init_gain)
            init.constant_(m.bias.data, 0.0)

    net.apply(_init)
    return net


# --------------------------------------------------------------------------------------------
# U-Net generator
# --------------------------------------------------------------------------------------------
class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level; its ``model`` Sequential holds [down ops, deeper level, up ops].

    Child indices (they define the state_dict keys):
      outermost: 0 Conv(down) | 1 submodule | 2 ReLU | 3 ConvT (biased) | 4 Tanh
      innermost: 0 LReLU | 1 Conv(down) | 2 ReLU | 3 ConvT | 4 norm
      middle:    0 LReLU | 1 Conv(down) | 2 norm | 3 submodule | 4 ReLU | 5 ConvT | 6 norm
                 [| 7 Dropout(0.5) when use_dropout]
    Non-outermost levels return cat([x, model(x)], dim=1) (skip first).
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: Optional[int] = None,
        submodule: Optional[nn.Module] = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        if input_nc is None:
            input_nc = outer_nc

        # creation order follows the official block: down conv, activations/norms, then up conv
        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        down_act = nn.LeakyReLU(0.2, True)
        down_norm = norm_layer(inner_nc)
        up_act = nn.ReLU(True)
        up_norm = norm_layer(outer_nc)

        if outermost:
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers: List[nn.Module] = [down_conv, submodule, up_act, up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [down_act, down_conv, up_act, up_conv, up_norm]
        else:
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [down_act, down_conv, down_norm, submodule, up_act, up_conv, up_norm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        if not innermost and submodule is None:
            raise ValueError("non-innermost U-Net block needs a submodule")
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # As in the official code, the in-place LeakyReLU (child 0) overwrites x before the
        # concatenation; harmless because a ReLU always follows the concat.
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Official U-Net generator (unet_256: num_downs=8, unet_128: num_downs=7).

    ``self.model`` is the outermost block, so keys start with ``model.model.``.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError("num_downs must be >= 5")
        # built from the innermost level outwards, as the official constructor does
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------
# ResNet generator
# --------------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """x + conv_block(x), no activation after the sum.

    conv_block children (reflect padding): 0 ReflPad1 | 1 Conv3 | 2 norm | 3 ReLU
    [| 4 Dropout(0.5)] | ReflPad1 | Conv3 | norm  -> convs at {1,5} or {1,6} with dropout.
    padding_type 'replicate' uses ReplicationPad2d; 'zero' puts padding=1 in the convs and
    drops the pad layers (which shifts the indices, as in the official code).
    """

    def __init__(self, dim: int, padding_type: str = "reflect", norm: str = "instance",
                 use_dropout: bool = False, use_bias: Optional[bool] = None) -> None:
        super().__init__()
        if use_bias is None:
            use_bias = uses_bias(norm)
        norm_layer = get_norm_layer(norm)

        def pad_layers() -> Tuple[List[nn.Module], int]:
            if padding_type == "reflect":
                return [nn.ReflectionPad2d(1)], 0
            if padding_type == "replicate":
                return [nn.ReplicationPad2d(1)], 0
            if padding_type == "zero":
                return [], 1
            raise NotImplementedError(f"padding [{padding_type}] is not implemented")

        layers: List[nn.Module] = []
        pads, p = pad_layers()
        layers += pads + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pads, p = pad_layers()
        layers += pads + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Official ResNet generator (c7s1-64, d128, d256, n_blocks x R256, u128, u64, c7s1-out).

    With 9 blocks: convs at model.1, model.4, model.7, blocks model.10..18, ConvT at model.19 and
    model.22, final (always biased) conv at model.26.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError("n_blocks must be >= 0")
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)

        layers: List[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_down = 2
        for i in range(n_down):  # zero-padded stride-2 convs
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=bias), norm_layer(c * 2), nn.ReLU(True)]
        dim = ngf * 2 ** n_down
        for _ in range(n_blocks):
            layers.append(ResnetBlock(dim, padding_type=padding_type, norm=norm, use_dropout=use_dropout, use_bias=bias))
        for i in range(n_down):
            c = ngf * 2 ** (n_down - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(c // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------------------------
# Discriminators
# --------------------------------------------------------------------------------------------
class NLayerDiscriminator(nn.Module):
    """PatchGAN; n_layers=3 is the official 'basic' 70x70 D (30x30 map for a 256 input).

    model children: 0 Conv(s2, biased) | 1 LReLU | then per layer Conv, norm, LReLU (stride 2,
    the last of them stride 1) | final Conv -> 1 channel (biased). No sigmoid.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        kw, padw = 4, 1
        layers: List[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=padw, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PixelGAN: net.0 Conv(in->ndf, biased) | 1 LReLU | 2 Conv(ndf->2ndf) | 3 norm | 4 LReLU |
    5 Conv(2ndf->1). Convs 2 and 5 follow the bias rule."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        bias = uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------------------
# Factories mirroring --netG / --netD (init at construction, the pre-2025 behaviour)
# --------------------------------------------------------------------------------------------
def define_G(input_nc: int, output_nc: int, ngf: int = 64, netG: str = "resnet_9blocks",
             norm: str = "instance", use_dropout: bool = False, init_type: str = "normal",
             init_gain: float = 0.02, init: bool = True) -> nn.Module:
    if netG == "resnet_9blocks":
        net: nn.Module = ResnetGenerator(input_nc, output_nc, ngf, norm=norm, use_dropout=use_dropout, n_blocks=9)
    elif netG == "resnet_6blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm=norm, use_dropout=use_dropout, n_blocks=6)
    elif netG == "unet_128":
        net = UnetGenerator(input_nc, output_nc, 7, ngf, norm=norm, use_dropout=use_dropout)
    elif netG == "unet_256":
        net = UnetGenerator(input_nc, output_nc, 8, ngf, norm=norm, use_dropout=use_dropout)
    else:
        raise NotImplementedError(f"Generator model name [{netG}] is not recognized")
    return init_weights(net, init_type, init_gain) if init else net


def define_D(input_nc: int, ndf: int = 64, netD: str = "basic", n_layers_D: int = 3,
             norm: str = "batch", init_type: str = "normal", init_gain: float = 0.02,
             init: bool = True) -> nn.Module:
    if netD == "basic":
        net: nn.Module = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm=norm)
    elif netD == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm=norm)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm=norm)
    else:
        raise NotImplementedError(f"Discriminator model name [{netD}] is not recognized")
    return init_weights(net, init_type, init_gain) if init else net


# --------------------------------------------------------------------------------------------
# Losses and helpers
# --------------------------------------------------------------------------------------------
class GANLoss(nn.Module):
    """vanilla: BCEWithLogits (mean); lsgan: MSE (mean); wgangp: -mean(pred) for real targets,
    +mean(pred) for fake ones (no gradient penalty, as in the official models).
    Targets are 1.0 / 0.0 expanded to the prediction's shape; no label smoothing."""

    def __init__(self, gan_mode: str, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.gan_mode = gan_mode
        if gan_mode == "lsgan":
            self.loss: Optional[nn.Module] = nn.MSELoss()
        elif gan_mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        elif gan_mode == "wgangp":
            self.loss = None
        else:
            raise NotImplementedError(f"gan mode {gan_mode} not implemented")

    def get_target_tensor(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        label = self.real_label if target_is_real else self.fake_label
        return label.to(prediction.dtype).expand_as(prediction)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        if self.gan_mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))


class ImagePool:
    """History buffer of generated images (util/image_pool.py behaviour).

    pool_size 0 returns the batch unchanged. Otherwise each image (detached) is, while the pool
    is filling, stored and returned; once full, with p = uniform(0,1) > 0.5 a random stored image
    (index randint(0, size-1), both inclusive) is returned as a clone and replaced by the new one,
    else the new image is returned and the pool is left alone. Python's ``random`` by default.
    """

    def __init__(self, pool_size: int, rng: Optional[random.Random] = None) -> None:
        self.pool_size = pool_size
        self.rng = rng if rng is not None else random  # module-level RNG, as the official pool
        self.images: List[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        out: List[torch.Tensor] = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(img)
                out.append(img)
            elif self.rng.uniform(0, 1) > 0.5:
                idx = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[idx].clone())
                self.images[idx] = img
            else:
                out.append(img)
        return torch.cat(out, 0)


def set_requires_grad(nets: Union[nn.Module, Sequence[nn.Module]], requires_grad: bool) -> None:
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad = requires_grad


def param_count(module: nn.Module) -> int:
    """Number of trainable-parameter elements (what the official code prints, before /1e6)."""
    return sum(p.numel() for p in module.parameters())


def buffer_count(module: nn.Module) -> int:
    """Number of buffer elements (BN running stats and num_batches_tracked)."""
    return sum(b.numel() for b in module.buffers())


def _adam(params: Iterable[torch.nn.Parameter], lr: float, beta1: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))  # eps 1e-8, no weight decay


# --------------------------------------------------------------------------------------------
# Training steps
# --------------------------------------------------------------------------------------------
class Pix2PixStep:
    """One official Pix2PixModel.optimize_parameters iteration.

    Defaults: unet_256 G with batch norm and dropout, basic D on input_nc+output_nc channels with
    batch norm, vanilla GAN, lambda_L1 100, Adam(2e-4, (0.5, 0.999)). Networks stay in train mode.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, ndf: int = 64,
                 netG: str = "unet_256", netD: str = "basic", n_layers_D: int = 3,
                 norm: str = "batch", use_dropout: bool = True, gan_mode: str = "vanilla",
                 lambda_L1: float = 100.0, lr: float = 2e-4, beta1: float = 0.5,
                 init_type: str = "normal", init_gain: float = 0.02,
                 netG_module: Optional[nn.Module] = None, netD_module: Optional[nn.Module] = None,
                 device: Union[str, torch.device] = "cpu") -> None:
        self.netG = netG_module if netG_module is not None else define_G(
            input_nc, output_nc, ngf, netG, norm, use_dropout, init_type, init_gain)
        self.netD = netD_module if netD_module is not None else define_D(
            input_nc + output_nc, ndf, netD, n_layers_D, norm, init_type, init_gain)
        self.netG.to(device).train()
        self.netD.to(device).train()
        self.criterionGAN = GANLoss(gan_mode).to(device)
        self.criterionL1 = nn.L1Loss()
        self.lambda_L1 = lambda_L1
        self.optimizer_G = _adam(self.netG.parameters(), lr, beta1)
        self.optimizer_D = _adam(self.netD.parameters(), lr, beta1)

    def __call__(self, real_A: torch.Tensor, real_B: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.step(real_A, real_B)

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> Dict[str, torch.Tensor]:
        # 1. forward, once per iteration
        fake_B = self.netG(real_A)

        # 2-5. D: fake pair (detached) first, then real pair; 0.5 * sum; D step
        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad()
        fake_AB = torch.cat((real_A, fake_B), 1)
        loss_D_fake = self.criterionGAN(self.netD(fake_AB.detach()), False)
        real_AB = torch.cat((real_A, real_B), 1)
        loss_D_real = self.criterionGAN(self.netD(real_AB), True)
        loss_D = (loss_D_fake + loss_D_real) * 0.5
        loss_D.backward()
        self.optimizer_D.step()

        # 6-8. G through the already-updated D (frozen): GAN(target real) + lambda * L1; G step
        set_requires_grad(self.netD, False)
        self.optimizer_G.zero_grad()
        loss_G_GAN = self.criterionGAN(self.netD(fake_AB), True)
        loss_G_L1 = self.criterionL1(fake_B, real_B) * self.lambda_L1
        loss_G = loss_G_GAN + loss_G_L1
        loss_G.backward()
        self.optimizer_G.step()

        self.fake_B = fake_B.detach()
        return {
            "G_GAN": loss_G_GAN.detach(),
            "G_L1": loss_G_L1.detach(),
            "D_real": loss_D_real.detach(),
            "D_fake": loss_D_fake.detach(),
        }


class CycleGANStep:
    """One official CycleGANModel.optimize_parameters iteration.

    Defaults: resnet_9blocks G_A/G_B with instance norm and no dropout, basic D_A/D_B with instance
    norm, lsgan, lambda_A = lambda_B = 10, lambda_identity 0.5, pools of 50, one Adam over
    (G_A, G_B) and one over (D_A, D_B). G step first, then D_A and D_B on pooled fakes.
    Naming: G_A: A->B, G_B: B->A, D_A judges domain B, D_B judges domain A.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, ndf: int = 64,
                 netG: str = "resnet_9blocks", netD: str = "basic", n_layers_D: int = 3,
                 norm: str = "instance", use_dropout: bool = False, gan_mode: str = "lsgan",
                 lambda_A: float = 10.0, lambda_B: float = 10.0, lambda_identity: float = 0.5,
                 pool_size: int = 50, lr: float = 2e-4, beta1: float = 0.5,
                 init_type: str = "normal", init_gain: float = 0.02,
                 pool_rng: Optional[random.Random] = None,
                 device: Union[str, torch.device] = "cpu") -> None:
        if lambda_identity > 0.0 and input_nc != output_nc:
            raise ValueError("identity loss needs input_nc == output_nc")
        # pre-2025 creation/init order: G_A, G_B, D_A, D_B
        self.netG_A = define_G(input_nc, output_nc, ngf, netG, norm, use_dropout, init_type, init_gain)
        self.netG_B = define_G(output_nc, input_nc, ngf, netG, norm, use_dropout, init_type, init_gain)
        self.netD_A = define_D(output_nc, ndf, netD, n_layers_D, norm, init_type, init_gain)
        self.netD_B = define_D(input_nc, ndf, netD, n_layers_D, norm, init_type, init_gain)
        for net in (self.netG_A, self.netG_B, self.netD_A, self.netD_B):
            net.to(device).train()
        self.fake_A_pool = ImagePool(pool_size, pool_rng)
        self.fake_B_pool = ImagePool(pool_size, pool_rng)
        self.criterionGAN = GANLoss(gan_mode).to(device)
        self.criterionCycle = nn.L1Loss()
        self.criterionIdt = nn.L1Loss()
        self.lambda_A, self.lambda_B, self.lambda_identity = lambda_A, lambda_B, lambda_identity
        self.optimizer_G = _adam(itertools.chain(self.netG_A.parameters(), self.netG_B.parameters()), lr, beta1)
        self.optimizer_D = _adam(itertools.chain(self.netD_A.parameters(), self.netD_B.parameters()), lr, beta1)

    def __call__(self, real_A: torch.Tensor, real_B: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.step(real_A, real_B)

    def _backward_D_basic(self, netD: nn.Module, real: torch.Tensor, fake: torch.Tensor):
        # real batch first, then the (pooled, detached) fakes; 0.5 * sum
        loss_real = self.criterionGAN(netD(real), True)
        loss_fake = self.criterionGAN(netD(fake.detach()), False)
        loss_D = (loss_real + loss_fake) * 0.5
        loss_D.backward()
        return loss_D

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> Dict[str, torch.Tensor]:
        # 1. forward
        fake_B = self.netG_A(real_A)
        rec_A = self.netG_B(fake_B)
        fake_A = self.netG_B(real_B)
        rec_B = self.netG_A(fake_A)

        # 2-3. generators, with the discriminators frozen; G step first
        set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        lam_idt, lam_A, lam_B = self.lambda_identity, self.lambda_A, self.lambda_B
        if lam_idt > 0:
            idt_A = self.netG_A(real_B)
            loss_idt_A = self.criterionIdt(idt_A, real_B) * lam_B * lam_idt
            idt_B = self.netG_B(real_A)
            loss_idt_B = self.criterionIdt(idt_B, real_A) * lam_A * lam_idt
        else:
            loss_idt_A = torch.zeros((), device=real_A.device)
            loss_idt_B = torch.zeros((), device=real_A.device)
        loss_G_A = self.criterionGAN(self.netD_A(fake_B), True)
        loss_G_B = self.criterionGAN(self.netD_B(fake_A), True)
        loss_cycle_A = self.criterionCycle(rec_A, real_A) * lam_A
        loss_cycle_B = self.criterionCycle(rec_B, real_B) * lam_B
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        loss_G.backward()
        self.optimizer_G.step()

        # 4-7. discriminators on pooled fakes (the fakes made before the G step); one D step
        set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        loss_D_A = self._backward_D_basic(self.netD_A, real_B, self.fake_B_pool.query(fake_B))
        loss_D_B = self._backward_D_basic(self.netD_B, real_A, self.fake_A_pool.query(fake_A))
        self.optimizer_D.step()

        self.fake_A, self.fake_B = fake_A.detach(), fake_B.detach()
        return {
            "D_A": loss_D_A.detach(), "G_A": loss_G_A.detach(), "cycle_A": loss_cycle_A.detach(),
            "idt_A": loss_idt_A.detach(), "D_B": loss_D_B.detach(), "G_B": loss_G_B.detach(),
            "cycle_B": loss_cycle_B.detach(), "idt_B": loss_idt_B.detach(),
        }
