"""Making sounds from a trained model.

Torch-free (the web server may import them at start-up): `analysis` (a model's
sound controls as data), `settings` (generation parameters, validated) and
`export` (audio files, waveform SVG). The rest imports torch: `loading`,
`controls` (the latent analysis), `synth` (generation), `transform`, `novelty`;
the waveform inverse is `audio.inverse`.
"""
