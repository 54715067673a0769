"""Pure figure and table builders: numpy data in, a Plotly `go.Figure` (or a DataFrame) out; no Streamlit.

    layout       what every figure shares: margins, MASKED_COLOR, stacked subplots, layer × head heatmaps,
                 the camera button's export options
    image        matrices as PNG images (palettes, max-pooling, a small PNG encoder)
    matrix       one token × token matrix: exact heatmap for short texts, an image for long ones
    pattern      a head's pattern and its scores; the pattern as CSV
    heads        every head's thumbnail in one image; per-head statistics
    qk           one query against every key: scores, vectors, products
    predictions  next-token predictions, with the change an intervention made
    deltas, projections, senses, params   the figures of the tabs of the same names
"""
