import torch

from sda_web.model import ConvVAE, ModelShape, vae_loss


def tiny_shape(**kw):
    base = dict(n_mels=80, frames=32, latent_dim=8, width=16, dropout=0.1)
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
    # A sigmoid/tanh output could never reach +-4, the range of normalised log-mel.
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
