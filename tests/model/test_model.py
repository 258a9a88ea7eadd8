import pytest
import torch

from sda_web.model import ConvVAE, ModelShape, vae_loss


def tiny_shape(**kw):
    base = dict(n_bands=80, frames=32, latent_dim=8, width=16, dropout=0.1)
    base.update(kw)
    return ModelShape(**base)


def test_every_parameter_changes_after_one_step():
    torch.manual_seed(0)
    model = ConvVAE(tiny_shape())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(4, 80, 32)
    recon, mu, logvar = model(x)
    vae_loss(recon, x, mu, logvar, kl_weight=0.1, free_bits=0.0).total.backward()
    opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []


def test_shapes_round_trip_and_decoder_output_is_unbounded():
    torch.manual_seed(0)
    model = ConvVAE(tiny_shape(dropout=0.0))
    x = torch.linspace(-4, 4, 80).view(1, 80, 1).expand(8, 80, 32).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        recon, mu, logvar = model(x)
        loss = vae_loss(recon, x, mu, logvar, 0.0, 0.0).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out, mu, _ = model(x)
    assert out.shape == x.shape and mu.shape == (8, 8)
    # A sigmoid/tanh output could never reach +-4, the range of normalised log features.
    assert out.max() > 3.0 and out.min() < -3.0


def test_kl_parts_are_reported_separately_and_free_bits_guard_small_kl():
    mu, logvar = torch.zeros(4, 8), torch.zeros(4, 8)
    x = torch.zeros(4, 80, 32)
    plain = vae_loss(x + 1, x, mu, logvar, kl_weight=1.0, free_bits=0.0)
    guarded = vae_loss(x + 1, x, mu, logvar, kl_weight=1.0, free_bits=0.5)
    assert plain.recon.item() == 1.0 and plain.kl.item() == 0.0
    assert guarded.kl.item() == 0.0 and guarded.total.item() > plain.total.item()


def test_frames_must_be_a_multiple_of_sixteen():
    try:
        ConvVAE(tiny_shape(frames=30))
    except ValueError as exc:
        assert "multiple of 16" in str(exc)
    else:
        raise AssertionError("expected a clear error")


# -- the model of whole sounds ------------------------------------------------

from sda_web.model import SoundShape, SoundVAE, sound_vae_loss  # noqa: E402
from sda_web.model.lengths import STRIDE  # noqa: E402


def sound_shape(**kw):
    base = dict(n_bands=24, frames=32, latent_dim=8, local_dim=4, width=16, dropout=0.0, frame_seconds=0.0116)
    base.update(kw)
    return SoundShape(**base)


def _forward(model, x, offsets=None):
    batch = x.shape[0]
    offsets = torch.zeros(batch, dtype=torch.long) if offsets is None else offsets
    return model(x, offsets, torch.full((batch,), min(x.shape[-1], model.shape.frames) // STRIDE))


def test_whole_sound_model_takes_any_length_and_every_parameter_learns():
    torch.manual_seed(0)
    model = SoundVAE(sound_shape())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(3, 24, 48)
    recon, global_stats, local_stats = _forward(model, x)[:3]
    assert recon.shape == x.shape and global_stats[0].shape == (3, 8) and local_stats[0].shape == (3, 4, 12)
    sound_vae_loss(recon, x, global_stats, local_stats, kl_weight=0.1, free_bits=0.0).total.backward()
    opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []
    for frames in (4, 20, 400):  # a 46-ms click and a 4.6-s ride go through the same weights
        assert _forward(model.eval(), torch.randn(1, 24, frames))[0].shape == (1, 24, frames)


def test_global_latent_sees_only_the_head_and_detail_is_local():
    """What happens after the head never changes the global latent; a change at the end of a sound
    changes the local latents there, not at its start."""
    torch.manual_seed(0)
    model = SoundVAE(sound_shape()).eval()
    x = torch.randn(1, 24, 96)
    later = x.clone()
    later[..., 80:] += 3.0
    with torch.no_grad():
        mu_g, _, mu_u, _ = model.encode(x)
        mu_g2, _, mu_u2, _ = model.encode(later)
    assert torch.equal(mu_g, mu_g2)
    changed = (mu_u - mu_u2).abs().amax(dim=1)[0]
    assert float(changed[:12].max()) == 0.0 and float(changed[-4:].max()) > 0.0


def test_decoding_a_long_drawn_sound_is_steady_after_its_onset():
    """The time features saturate: steps far after the onset see the same inputs, so a sound
    decoded for a long time from one latent settles to a steady state instead of repeating."""
    torch.manual_seed(0)
    model = SoundVAE(sound_shape(frame_seconds=0.05)).eval()
    steps = 200
    with torch.no_grad():
        out = model.decode(torch.randn(1, 8), torch.zeros(1, 4, steps), model.time(1, steps * STRIDE))[0]
    early, late = out[:, 8:24], out[:, -400:-100]  # 25-35 s in (the last steps see the edge's zero padding)
    steady = late[:, -1:]
    assert float((late - steady).abs().max()) < 0.1 * float((early - steady).abs().max())


def test_whole_sound_loss_weighs_the_global_only_decode_and_free_bits_guard_only_the_global_latent():
    x = torch.zeros(2, 24, 16)
    g = (torch.zeros(2, 8), torch.zeros(2, 8))
    local = (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
    plain = sound_vae_loss(x, x, g, local, 1.0, 0.0)
    assert plain.total.item() == 0.0
    with_prior = sound_vae_loss(x, x, g, local, 1.0, 0.0, prior_recon=x + 1.0, prior_weight=0.5)
    assert with_prior.recon.item() == 0.0 and abs(with_prior.total.item() - 0.5) < 1e-7
    guarded = sound_vae_loss(x, x, g, local, 1.0, free_bits=0.5)
    assert guarded.kl.item() == 0.0 and abs(guarded.total.item() - 8 * 0.5 / (24 * 16)) < 1e-7
    costly = sound_vae_loss(x, x, g, (torch.ones(2, 4, 4), torch.zeros(2, 4, 4)), 1.0, free_bits=0.5)
    assert abs(costly.total.item() - guarded.total.item() - 16 * 0.5 / (24 * 16)) < 1e-6  # no free bits locally


def test_the_spectral_term_stays_finite_when_a_reconstruction_overshoots_its_target():
    """One reconstructed cell far above the target's peak (a model started from another, first
    steps) must give a large, finite loss and gradient, not inf; and the same value as before
    wherever the reconstruction stays below the peak."""
    from sda_web.model.losses import spectral_convergence

    torch.manual_seed(0)
    target = torch.randn(2, 16, 12)
    near = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    value = spectral_convergence(near, target, std=5.5)
    shifted = target.amax(dim=(1, 2), keepdim=True)
    by_hand = []
    for r, t, p in zip(near.detach(), target, shifted):
        mag_r, mag_t = torch.exp((r - p) * 2.75), torch.exp((t - p) * 2.75)
        by_hand.append((mag_r - mag_t).norm() / mag_t.norm())
    assert float(value.detach()) == pytest.approx(float(torch.stack(by_hand).mean()), rel=1e-4)
    spike = target.clone()
    spike[0, 3, 4] += 40.0  # exp(40 x 2.75) overflows float32
    spike.requires_grad_()
    loss = spectral_convergence(spike, target, std=5.5)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 1.0 and torch.isfinite(spike.grad).all()
