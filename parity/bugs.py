"""The catalogue's entries: known porting bugs, each a small change to one of the six proven ports,
and controls, changes that keep the port the same model. Used by parity.catalogue."""

from __future__ import annotations

from parity.mutants import Entry

LINEN = "flax_impl/model.py"
STEPS = "flax_impl/steps.py"
TRAINING = "flax_impl/training.py"
MNIST = "examples/mnist_net/jax_model.py"
BN = "examples/bn_net/jax_model.py"
GPT = "examples/nanogpt/jax_model.py"
RESNET = "examples/resnet18/jax_model.py"
LSTM = "examples/word_language_model/jax_model.py"

# nanoGPT's attention as Flax's own nnx.MultiHeadAttention (its query, key, value and out projections
# for model.py's c_attn and c_proj, its dropout on the weights for SDPA's): the port's weight map and
# Port.layers change with it (`also`). The control sets broadcast_dropout=False; the bug keeps Flax's
# default, one mask shared over the batch and the heads.
GPT_ATTENTION = """    def __init__(self, config, rngs: nnx.Rngs):
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.c_attn = nnx.Linear(config.n_embd, 3 * config.n_embd, use_bias=config.bias, kernel_init=normal(0.02),
                                 rngs=rngs)
        self.c_proj = nnx.Linear(config.n_embd, config.n_embd, use_bias=config.bias, kernel_init=normal(proj_std),
                                 rngs=rngs)
        self.attn_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.resid_dropout = nnx.Dropout(config.dropout, rngs=rngs)
        self.n_head, self.n_embd = config.n_head, config.n_embd

    def __call__(self, x):
        B, T, C = x.shape
        q, k, v = jnp.split(self.c_attn(x), 3, axis=2)
        heads = lambda a: a.reshape(B, T, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.swapaxes(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)
        att = self.attn_dropout(jax.nn.softmax(att, axis=-1))
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))
"""


def gpt_mha(broadcast: str) -> str:
    return f"""    def __init__(self, config, rngs: nnx.Rngs):
        proj_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.mha = nnx.MultiHeadAttention(config.n_head, config.n_embd, qkv_features=config.n_embd,
                                          out_features=config.n_embd, use_bias=config.bias,
                                          dropout_rate=config.dropout,{broadcast} decode=False,
                                          kernel_init=normal(0.02), out_kernel_init=normal(proj_std), rngs=rngs)
        self.resid_dropout = nnx.Dropout(config.dropout, rngs=rngs)

    def __call__(self, x):
        return self.resid_dropout(self.mha(x, is_causal=True))
"""


# model.py decays the parameters of 2 or more dimensions, as the port's mask does; nnx.MultiHeadAttention's
# biases are (heads, head size), 2-D where torch's c_attn.bias is 1-D: the MHA port decays by name.
GPT_DECAY_BY_NAME = (
    "examples/nanogpt/jax_model.py",
    "    return jax.tree.map(lambda p: p.ndim >= 2, params)\n",
    "    # by name: nnx.MultiHeadAttention's biases are (heads, head size), 2-D where torch's are 1-D\n"
    "    return jax.tree_util.tree_map_with_path(\n"
    "        lambda path, p: any(getattr(k, 'key', None) in ('kernel', 'embedding') for k in path), params)\n")
GPT_PROOF = "examples/nanogpt/test_proof.py"
GPT_MHA_PORT = (
    (GPT_PROOF, "from parity import JaxSide, Port, TorchSide, same_layout, same_names",
     "from parity import JaxSide, Layout, Port, Split, TorchSide, same_layout, same_names"),
    (GPT_PROOF, '("ln_1", "layernorm"), ("attn.c_attn", "linear"), ("attn.c_proj", "linear"),', '("ln_1", "layernorm"),'),
    (GPT_PROOF, "\nPORT = Port(\n", """
E, H, D = CONFIG.n_embd, CONFIG.n_head, CONFIG.n_embd // CONFIG.n_head
HEADS = Layout("heads", lambda w: w.T.reshape(E, H, D), lambda k: k.reshape(E, E).T)  # (out, in) -> (in, H, D)
HEAD_BIAS = Layout("head-bias", lambda b: b.reshape(H, D), lambda b: b.reshape(E))
OUT = Layout("out-heads", lambda w: w.T.reshape(H, D, E), lambda k: k.reshape(E, E).T)
QKV = ("query", "key", "value")  # c_attn's rows: q, then k, then v
MHA = {f"transformer.h.{i}.attn.{name}": entry for i in range(CONFIG.n_layer) for name, entry in {
    "c_attn.weight": Split(tuple((f"params/transformer/h/{i}/attn/mha/{p}/kernel", HEADS) for p in QKV)),
    "c_attn.bias": Split(tuple((f"params/transformer/h/{i}/attn/mha/{p}/bias", HEAD_BIAS) for p in QKV)),
    "c_proj.weight": (f"params/transformer/h/{i}/attn/mha/out/kernel", OUT),
    "c_proj.bias": (f"params/transformer/h/{i}/attn/mha/out/bias", "same")}.items()}

PORT = Port(
"""),
    (GPT_PROOF, '"lm_head.weight": ("params/transformer/wte/embedding", "same")},',
     '"lm_head.weight": ("params/transformer/wte/embedding", "same"), **MHA},'),
    (GPT_PROOF, """    layers={f"transformer.h.{i}.attn.scaled_dot_product_attention.dropout": f"transformer.h.{i}.attn.attn_dropout"
            for i in range(CONFIG.n_layer)},""",
     """    layers={f"transformer.h.{i}.attn.{t}": f"transformer.h.{i}.attn.mha.{j}" for i in range(CONFIG.n_layer)
            for t, j in (("scaled_dot_product_attention.dropout", "scaled_dot_product_attention.dropout"),
                         ("c_proj", "out"))},"""),
)

ENTRIES = [
    # ---------------------------------------------------------------- the convnet (flax_impl, Linen)
    Entry("flatten in NHWC order", "layout", "convnet", LINEN,
          "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)", "x = x.reshape(x.shape[0], -1)",
          "torch flattens NCHW channel-major; a port that flattens its NHWC tensor as it is feeds the first "
          "dense layer a permutation (Flax's porting guide warns of it; the most common port bug in forums)"),
    Entry("conv kernel transposed in the weight conversion", "layout", "convnet", "flax_impl/convert.py",
          "kernel = w.transpose(2, 3, 1, 0)", "kernel = w.transpose(3, 2, 1, 0)",
          "OIHW -> HWIO written with H and W swapped: shapes match for square kernels, values do not "
          "(transformers' PT->Flax conversion issues)",
          kit_unreachable="flax_impl/convert.py is the trainers' checkpoint converter; the kit maps weights through the port's own weight map"),
    Entry("SAME padding for torch's padding=0", "padding", "convnet", LINEN,
          'nn.Conv(CONV1_CHANNELS, (k, k), padding="VALID"', 'nn.Conv(CONV1_CHANNELS, (k, k), padding="SAME"',
          "Flax's nn.Conv pads SAME by default, torch's Conv2d not at all (Flax porting guide)"),
    Entry("max pool without strides", "padding", "convnet", LINEN,
          "return nn.max_pool(x, (2, 2), strides=(2, 2))", "return nn.max_pool(x, (2, 2))",
          "torch's MaxPool2d stride defaults to the window, Flax's max_pool stride to 1"),
    Entry("Flax's default init (lecun_normal, zero bias)", "initialisation", "convnet", "flax_impl/inits.py",
          'return {"kernel_init": torch_kernel_init, "bias_init": torch_bias_init(fan_in)}', "return {}",
          "a port that keeps Flax's initialisers trains from another distribution than torch's kaiming_uniform"),
    Entry("a truncated normal for torch's uniform", "initialisation", "convnet", "flax_impl/inits.py",
          'variance_scaling(1 / 3, "fan_in", "uniform")', 'variance_scaling(1 / 3, "fan_in", "truncated_normal")',
          "the right variance from the wrong family, truncated at 2 std where torch's uniform ends at sqrt(3) "
          "std (timm/transformers trunc_normal_ ports)"),
    Entry("the seed ignored", "initialisation", "convnet", TRAINING,
          "key = jax.random.key(config.seed)", "key = jax.random.key(0)",
          "a hard-coded PRNGKey(0): every seed trains the same weights, so a seed sweep measures nothing"),
    Entry("Adam's b2 0.99", "optimizer", "convnet", STEPS,
          "optax.adam(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8)", "optax.adam(learning_rate=lr, b1=0.9, b2=0.99, eps=1e-8)",
          "a b2 copied from another recipe; it changes the effective step size after a few hundred steps"),
    Entry("Adam's eps inside the square root", "optimizer", "convnet", STEPS,
          "optax.adam(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8)",
          "optax.adam(learning_rate=lr, b1=0.9, b2=0.999, eps=0.0, eps_root=1e-8)",
          "eps added to v before the square root (optax's eps_root, TF1's epsilon-hat) instead of after "
          "(AlgoPerf's PyTorch/JAX workload diffs list such optimizer-formula differences)"),
    Entry("optax.adamw where torch has Adam", "optimizer", "convnet", STEPS,
          "optax.adam(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8)",
          "optax.adamw(learning_rate=lr, b1=0.9, b2=0.999, eps=1e-8)",
          "optax.adamw decays weights by 1e-4 by default (decoupled); torch's Adam adds L2 to the gradient, "
          "and not at all by default: L2 and AdamW are not the same"),
    Entry("loss summed, not averaged", "loss", "convnet", STEPS,
          "return loss_sum / valid.sum(), (loss_sum, correct)", "return loss_sum, (loss_sum, correct)",
          "reduction='sum' vs 'mean': every gradient 64x, Adam hides part of it, not all"),
    Entry("label smoothing on one side", "loss", "convnet", STEPS,
          "return optax.softmax_cross_entropy_with_integer_labels(logits, labels)",
          "return optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), 0.1))",
          "a recipe's label_smoothing=0.1 ported to one side only (torch's CrossEntropyLoss takes it as an argument)"),
    Entry("padding counted in the loss", "loss", "convnet", STEPS,
          "loss_sum = jnp.where(valid, cross_entropy(logits, jnp.maximum(labels, 0)), 0.0).sum()",
          "loss_sum = cross_entropy(logits, jnp.maximum(labels, 0)).sum()",
          "a padded last batch (fixed shapes under jit) whose padding rows count in the mean",
          kit_unreachable="the trainer's padded batches: the kit's batches are never padded"),
    Entry("no reshuffle between epochs", "data", "convnet", TRAINING,
          "order = epoch_order(n, config.seed, epoch).astype(np.int32)",
          "order = epoch_order(n, config.seed, 1).astype(np.int32)",
          "a permutation drawn once, outside the epoch loop (DataLoader reshuffles every epoch)",
          kit_unreachable="the trainer's data loader: the kit feeds both sides its own batches"),
    Entry("the last partial batch dropped", "data", "convnet", TRAINING,
          "    if n % batch_size:\n        yield pad(", "    if False:  # drop_last\n        yield pad(",
          "drop_last=True on one side (tf.data's batch(drop_remainder=True), fixed shapes for jit)",
          kit_unreachable="the trainer's data loader: the kit feeds both sides its own batches"),
    Entry("a bfloat16 dense layer", "precision", "convnet", LINEN,
          "self.dense1 = nn.Dense(HIDDEN, **initializers(init, flat_features(k)))",
          "self.dense1 = nn.Dense(HIDDEN, dtype=jax.numpy.bfloat16, **initializers(init, flat_features(k)))",
          "reduced-precision matmuls on one side: TF32 on an Ampere GPU, bfloat16 on a TPU (JAX's default "
          "matmul precision there); on a CPU the same class of error is a bfloat16 layer"),
    # ---------------------------------------------------------------- mnist_net (pytorch/examples' Net)
    Entry("keep probability for drop probability", "dropout", "mnist_net", MNIST,
          "self.dropout1 = nnx.Dropout(0.25, rngs=rngs)", "self.dropout1 = nnx.Dropout(0.75, rngs=rngs)",
          "TF1's dropout(keep_prob) read as a rate: 0.75 dropped where torch drops 0.25"),
    Entry("dropout active in eval", "dropout", "mnist_net", MNIST,
          "x = self.dropout1(x)", "x = self.dropout1(x, deterministic=False)",
          "a deterministic flag hard-wired (or a train flag not passed down): evaluation drops units"),
    Entry("log_softmax applied twice", "loss", "mnist_net", MNIST,
          "return -jnp.take_along_axis(output, target[:, None].astype(jnp.int32), axis=1).mean()",
          "return optax.softmax_cross_entropy_with_integer_labels(output, target).mean()",
          "cross-entropy on outputs that are already log-probabilities (F.nll_loss ported as cross_entropy)",
          miss_explained="not a bug in effect: log_softmax of log-probabilities returns them unchanged "
          "(their logsumexp is 0), so the loss and its gradients are the same function, equal to float "
          "rounding; no sound bound can fail it, and none should"),
    Entry("StepLR stepped per batch", "schedule", "mnist_net", MNIST,
          "return lambda step: LR * GAMMA ** (step // steps_per_epoch)", "return lambda step: LR * GAMMA ** step",
          "optax schedules count optimizer steps, torch's StepLR counts scheduler.step() calls (once an epoch here)"),
    Entry("StepLR off by one epoch", "schedule", "mnist_net", MNIST,
          "return lambda step: LR * GAMMA ** (step // steps_per_epoch)",
          "return lambda step: LR * GAMMA ** ((step + 1) // steps_per_epoch)",
          "the decay applied at the last step of an epoch instead of the first of the next"),
    Entry("Adadelta's rho 0.95", "optimizer", "mnist_net", MNIST,
          "optax.adadelta(schedule(steps_per_epoch), rho=0.9, eps=1e-6)",
          "optax.adadelta(schedule(steps_per_epoch), rho=0.95, eps=1e-6)",
          "the Adadelta paper's rho (0.95, Keras's default) where torch's default is 0.9"),
    Entry("Adadelta's eps 1e-7", "optimizer", "mnist_net", MNIST,
          "optax.adadelta(schedule(steps_per_epoch), rho=0.9, eps=1e-6)",
          "optax.adadelta(schedule(steps_per_epoch), rho=0.9, eps=1e-7)",
          "Keras's epsilon (1e-7) for torch's 1e-6: Adadelta's first steps scale with sqrt(eps)"),
    Entry("a truncated normal init", "initialisation", "mnist_net", MNIST,
          'variance_scaling(1 / 3, "fan_in", "uniform")', 'variance_scaling(1 / 3, "fan_in", "truncated_normal")',
          "the right variance from the wrong distribution"),
    Entry("the seed ignored", "initialisation", "mnist_net", MNIST,
          "return Net(rngs=nnx.Rngs(seed))", "return Net(rngs=nnx.Rngs(0))",
          "nnx.Rngs(0) hard-coded"),
    Entry("another normalisation", "data", "mnist_net", MNIST,
          'inputs = normalize(0.1307, 0.3081, "NHWC")', 'inputs = normalize(0.5, 0.5, "NHWC")',
          "the ubiquitous Normalize((0.5,), (0.5,)) where the script uses MNIST's mean and std"),
    Entry("flatten in NHWC order", "layout", "mnist_net", MNIST,
          "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)", "x = x.reshape(x.shape[0], -1)",
          "as for the convnet, through dropout this time"),
    Entry("SAME padding on conv2", "padding", "mnist_net", MNIST,
          'nnx.Conv(32, 64, (3, 3), padding="VALID"', 'nnx.Conv(32, 64, (3, 3), padding="SAME"',
          "NNX's Conv pads SAME by default"),
    # ---------------------------------------------------------------- bn_net (BatchNorm, SGD + momentum)
    Entry("BatchNorm momentum copied from torch", "BatchNorm", "bn_net", BN,
          "def model(seed: int, norm=BatchNorm) -> BnNet:",
          "def model(seed: int, norm=lambda n: nnx.BatchNorm(n, momentum=0.1, rngs=nnx.Rngs(0))) -> BnNet:",
          "torch's momentum weights the new batch, Flax's the old statistics: 0.1 means the opposite "
          "(Flax and Equinox issues on BatchNorm)"),
    Entry("Flax's BatchNorm at its default momentum", "BatchNorm", "bn_net", BN,
          "def model(seed: int, norm=BatchNorm) -> BnNet:",
          "def model(seed: int, norm=lambda n: nnx.BatchNorm(n, rngs=nnx.Rngs(0))) -> BnNet:",
          "nnx.BatchNorm() as it comes: momentum 0.99, where torch's 0.1 is Flax's 0.9"),
    Entry("biased running variance", "BatchNorm", "bn_net", BN,
          "self.momentum * var * (n / (n - 1))", "self.momentum * var",
          "torch keeps the unbiased batch variance in running_var, Flax the biased one"),
    Entry("running statistics updated in eval mode", "BatchNorm", "bn_net", BN,
          "            mean, var = self.mean[...], self.var[...]\n",
          "            mean, var = self.mean[...], self.var[...]\n"
          "            self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * x.mean(\n"
          "                tuple(range(x.ndim - 1)))\n",
          "statistics mutable during evaluation (Linen's mutable=['batch_stats'] left on in eval)"),
    Entry("BatchNorm eps 1e-6", "normalisation", "bn_net", BN,
          "momentum: float = 0.1, eps: float = 1e-5", "momentum: float = 0.1, eps: float = 1e-6",
          "an epsilon from another framework's default (1e-6, 1e-3 in Keras) where torch's is 1e-5"),
    Entry("Nesterov momentum", "optimizer", "bn_net", BN,
          "return optax.sgd(LR, momentum=MOMENTUM)", "return optax.sgd(LR, momentum=MOMENTUM, nesterov=True)",
          "nesterov=True on one side only"),
    Entry("loss summed, not averaged", "loss", "bn_net", BN,
          "return optax.softmax_cross_entropy_with_integer_labels(output, target).mean()",
          "return optax.softmax_cross_entropy_with_integer_labels(output, target).sum()",
          "reduction='sum': SGD's steps 64x larger"),
    Entry("label smoothing on one side", "loss", "bn_net", BN,
          "return optax.softmax_cross_entropy_with_integer_labels(output, target).mean()",
          "return optax.softmax_cross_entropy(output, optax.smooth_labels(jax.nn.one_hot(target, 10), 0.1)).mean()",
          "CrossEntropyLoss(label_smoothing=0.1) in one recipe, not the other"),
    # ---------------------------------------------------------------- nanoGPT (karpathy/nanoGPT, as published)
    Entry("tanh GELU for torch's exact erf", "activation", "nanogpt", GPT,
          "nnx.gelu(self.c_fc(x), approximate=False)", "nnx.gelu(self.c_fc(x))",
          "jax.nn.gelu approximates with tanh by default, torch's nn.GELU() is exact (transformers' GELU fixes: "
          "gelu_new vs gelu)"),
    Entry("LayerNorm epsilon at Flax's 1e-6", "normalisation", "nanogpt", GPT,
          "self.ln_1 = nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, rngs=rngs)",
          "self.ln_1 = nnx.LayerNorm(config.n_embd, use_bias=config.bias, rngs=rngs)",
          "nnx.LayerNorm's default epsilon is 1e-6, nanoGPT's F.layer_norm uses 1e-5 (Flax issues on LayerNorm ports)"),
    Entry("no causal mask", "attention", "nanogpt", GPT,
          "        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)\n", "",
          "is_causal=True is an argument of torch's SDPA call; a port written from the math forgets it"),
    Entry("causal mask shifted by one", "attention", "nanogpt", GPT,
          "jnp.tril(jnp.ones((T, T), bool))", "jnp.tril(jnp.ones((T, T), bool), k=1)",
          "tril's diagonal offset: each position sees the next token"),
    Entry("attention scaled by 1 / head size", "attention", "nanogpt", GPT,
          "* (1.0 / math.sqrt(k.shape[-1]))", "* (1.0 / k.shape[-1])",
          "the sqrt forgotten in 1 / sqrt(d_k)"),
    Entry("softmax over the queries", "attention", "nanogpt", GPT,
          "jax.nn.softmax(att, axis=-1)", "jax.nn.softmax(att, axis=-2)",
          "softmax over the wrong axis of (B, nh, T, T)"),
    Entry("attention dropout on its output", "dropout", "nanogpt", GPT,
          "        att = self.attn_dropout(jax.nn.softmax(att, axis=-1))\n        y = (att @ v)",
          "        att = jax.nn.softmax(att, axis=-1)\n        y = self.attn_dropout(att @ v)",
          "SDPA's dropout_p drops the attention weights; a port drops the attended values"),
    Entry("nnx.MultiHeadAttention's dropout left at broadcast_dropout=True", "dropout", "nanogpt", GPT, GPT_ATTENTION,
          gpt_mha(""),
          "the port above (the control \"nanoGPT's attention as nnx.MultiHeadAttention\") with Flax's default "
          "broadcast_dropout=True: one (1, 1, T, T) mask shared by every sequence and head, where torch's SDPA "
          "drops each weight (flax's attention docstring: 'use a broadcasted dropout along batch dims')",
          also=(GPT_DECAY_BY_NAME, *GPT_MHA_PORT)),
    Entry("nnx.MultiHeadAttention's biases decayed (the mask by ndim)", "optimizer", "nanogpt", GPT, GPT_ATTENTION,
          gpt_mha(" broadcast_dropout=False,"),
          "the control \"nanoGPT's attention as nnx.MultiHeadAttention\" with the port's decay mask kept as "
          "model.py writes it, p.dim() >= 2: Flax's query, key and value biases are (heads, head size), so "
          "AdamW decays them where torch's 1-D c_attn.bias is not (found writing that control: the kit "
          "failed it at the optimizer check)", also=GPT_MHA_PORT),
    Entry("q, k, v split in another order", "layout", "nanogpt", GPT,
          "q, k, v = jnp.split(self.c_attn(x), 3, axis=2)", "k, q, v = jnp.split(self.c_attn(x), 3, axis=2)",
          "c_attn's rows are q then k then v; a port from another checkpoint (HF's fused qkv) splits otherwise"),
    Entry("no position embedding", "layout", "nanogpt", GPT,
          "x = self.transformer.drop(tok_emb + pos_emb)", "x = self.transformer.drop(tok_emb)",
          "wpe computed and not added"),
    Entry("post-LayerNorm where nanoGPT is pre-LN", "normalisation", "nanogpt", GPT,
          "x = x + self.attn(self.ln_1(x))", "x = self.ln_1(x + self.attn(x))",
          "GPT-1/BERT's post-LN block for GPT-2's pre-LN"),
    Entry("weight tying lost", "layout", "nanogpt", GPT,
          "        logits = self.transformer.wte.attend(x)  # the tied lm_head",
          "        logits = x @ jax.lax.stop_gradient(self.transformer.wte.embedding[...]).T",
          "the head reads the embedding but its gradient is not the embedding's (a copied, untrained head)"),
    Entry("output projections without the scaled init", "initialisation", "nanogpt", GPT,
          "self.c_proj = nnx.Linear(config.n_embd, config.n_embd, use_bias=config.bias, kernel_init=normal(proj_std),",
          "self.c_proj = nnx.Linear(config.n_embd, config.n_embd, use_bias=config.bias, kernel_init=normal(0.02),",
          "GPT-2's 0.02 / sqrt(2 n_layer) for residual projections forgotten"),
    Entry("Flax's default embedding init", "initialisation", "nanogpt", GPT,
          "wte=nnx.Embed(config.vocab_size, config.n_embd, embedding_init=normal(0.02), rngs=rngs)",
          "wte=nnx.Embed(config.vocab_size, config.n_embd, rngs=rngs)",
          "nnx.Embed draws variance_scaling(1, fan_in, normal): std 1, where nanoGPT draws 0.02"),
    Entry("truncated normal for torch's normal", "initialisation", "nanogpt", GPT,
          "normal = nnx.initializers.normal", "normal = nnx.initializers.truncated_normal",
          "timm's trunc_normal_ habit: the same std, cut at 2 std"),
    Entry("weight decay on biases and LayerNorms", "optimizer", "nanogpt", GPT,
          "weight_decay=WEIGHT_DECAY, mask=decay_mask))", "weight_decay=WEIGHT_DECAY))",
          "configure_optimizers decays only tensors of 2 or more dimensions; optax.adamw decays all by default"),
    Entry("coupled L2 where torch decouples", "optimizer", "nanogpt", GPT,
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask))""",
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.masked(optax.add_decayed_weights(WEIGHT_DECAY), decay_mask),
                       optax.adam(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8))""",
          "Adam with L2 in the gradient for AdamW's decoupled decay (the AdamW paper's point)"),
    Entry("betas left at Optax's defaults", "optimizer", "nanogpt", GPT,
          "b1=BETA1, b2=BETA2, eps=1e-8,", "b1=BETA1, eps=1e-8,", "train.py's beta2 0.95 where optax says 0.999"),
    Entry("Adam's eps at Keras's 1e-7", "optimizer", "nanogpt", GPT,
          "b1=BETA1, b2=BETA2, eps=1e-8,", "b1=BETA1, b2=BETA2, eps=1e-7,", "TF/Keras's epsilon for torch's 1e-8"),
    Entry("clipping per tensor", "optimizer", "nanogpt", GPT,
          "optax.clip_by_global_norm(GRAD_CLIP)", "optax.clip_by_block_rms(GRAD_CLIP)",
          "each tensor clipped alone where clip_grad_norm_ clips the global norm"),
    Entry("clipping after the optimizer", "optimizer", "nanogpt", GPT,
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask))""",
          """    return optax.chain(optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask),
                       optax.clip_by_global_norm(GRAD_CLIP))""",
          "chain order: the updates clipped instead of the gradients"),
    Entry("warmup off by one", "schedule", "nanogpt", GPT,
          "warmup = LEARNING_RATE * (it + 1) / (WARMUP_ITERS + 1)", "warmup = LEARNING_RATE * it / WARMUP_ITERS",
          "optax.linear_schedule's it / warmup (0 at the first step) for get_lr's (it + 1) / (warmup + 1)"),
    Entry("the decay floor forgotten", "schedule", "nanogpt", GPT,
          "cosine = MIN_LR + 0.5 * (1.0 + jnp.cos(jnp.pi * decay_ratio)) * (LEARNING_RATE - MIN_LR)",
          "cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * decay_ratio)) * LEARNING_RATE",
          "optax.cosine_decay_schedule's alpha left at 0 where get_lr decays to min_lr"),
    Entry("the schedule one iteration ahead", "schedule", "nanogpt", GPT,
          "it = jnp.asarray(it, jnp.float64", "it = jnp.asarray(it + 1, jnp.float64",
          "optax's count starts at 0 like iter_num; a port counts from 1"),
    Entry("ignore_index counted", "loss", "nanogpt", GPT,
          "return jnp.sum(jnp.where(counted, losses, 0.0)) / jnp.sum(counted)", "return losses.mean()",
          "F.cross_entropy(ignore_index=-1) averages over the counted targets; a plain mean counts the -1s. "
          "The text holds no -1 target, so the proof sees it only on the port's edge_batch (every 4th target -1)"),
    # ---------------------------------------------------------------- ResNet-18 (torchvision, as published)
    Entry("'SAME' padding on the stride-2 convs", "padding", "resnet18", RESNET,
          "strides=stride, padding=((pad, pad), (pad, pad)),", 'strides=stride, padding="SAME" if stride == 2 else ((pad, pad), (pad, pad)),',
          "SAME pads (0, 1) at stride 2 on an even size where torch pads (1, 1) (Flax ResNet port issues)"),
    Entry("'SAME' padding on the max pool", "padding", "resnet18", RESNET,
          "x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))",
          'x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")',
          "MaxPool2d(3, 2, padding=1) as SAME: (0, 1) on the 14x14 map"),
    Entry("nnx.BatchNorm at its defaults", "BatchNorm", "resnet18", RESNET,
          "self.conv1, self.bn1 = conv(1, 64, 7, 2, 3, rngs), BatchNorm(64)",
          "self.conv1, self.bn1 = conv(1, 64, 7, 2, 3, rngs), nnx.BatchNorm(64, rngs=rngs)",
          "Flax's momentum 0.99 of the old statistics and biased variance, in the stem"),
    Entry("BatchNorm epsilon at Keras's 1e-3", "normalisation", "resnet18", RESNET,
          "momentum: float = 0.1, eps: float = 1e-5", "momentum: float = 0.1, eps: float = 1e-3",
          "Keras's BatchNormalization epsilon for torch's 1e-5"),
    Entry("Flax's default init for torchvision's kaiming fan-out", "initialisation", "resnet18", RESNET,
          "use_bias=False,\n                    kernel_init=KAIMING_FAN_OUT, rngs=rngs)", "use_bias=False,\n                    rngs=rngs)",
          "lecun_normal where torchvision draws kaiming_normal_(mode='fan_out')"),
    Entry("downsample without its BatchNorm", "layout", "resnet18", RESNET,
          "nnx.List([conv(cin, cout, 1, stride, 0, rngs), BatchNorm(cout)])", "nnx.List([conv(cin, cout, 1, stride, 0, rngs)])",
          "the shortcut's BatchNorm dropped"),
    Entry("a fixed 7x7 pool where torch adapts", "layout", "resnet18", RESNET,
          "return self.fc(x.mean((1, 2)))",
          'return self.fc(nnx.avg_pool(x, (7, 7), padding="SAME").reshape(x.shape[0], -1))',
          "ImageNet's final 7x7 pool for AdaptiveAvgPool2d(1): on this 1x1 map it divides by 49"),
    Entry("decay outside the momentum", "optimizer", "resnet18", RESNET,
          "optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(schedule(steps_per_epoch), MOMENTUM))",
          "optax.chain(optax.trace(decay=MOMENTUM), optax.add_decayed_weights(WEIGHT_DECAY), "
          "optax.scale_by_learning_rate(schedule(steps_per_epoch)))",
          "torch's SGD adds the decay to the gradient before momentum"),
    Entry("the schedule stepped per epoch", "schedule", "resnet18", RESNET,
          "count = jnp.asarray(count).astype(jnp.result_type(float))",
          "count = (jnp.asarray(count) // steps_per_epoch * steps_per_epoch).astype(jnp.result_type(float))",
          "a per-batch LambdaLR ported as an epoch schedule"),
    Entry("Nesterov momentum", "optimizer", "resnet18", RESNET,
          "optax.sgd(schedule(steps_per_epoch), MOMENTUM))", "optax.sgd(schedule(steps_per_epoch), MOMENTUM, nesterov=True))",
          "nesterov=True on one side"),
    Entry("nn.LSTM's dropout between layers forgotten", "dropout", "word_language_model", LSTM,
          "            if k > 0:\n                x = self.dropout(x)\n", "",
          "nn.LSTM(..., dropout=p) drops between its layers inside the op, where no nn.Dropout shows it: a port "
          "of the module's visible layers leaves it out"),
    Entry("dropout after the last LSTM layer too", "dropout", "word_language_model", LSTM,
          "            if k > 0:\n                x = self.dropout(x)\n            (h, c), x = layer(x, (h0[k], c0[k]))\n",
          "            (h, c), x = layer(x, (h0[k], c0[k]))\n            x = self.dropout(x)\n",
          "torch drops every layer's output but the last (nn.LSTM's docs); a loop that drops after each layer "
          "drops the LSTM's output twice, with the model's own drop after it"),
    Entry("LSTM gates in TensorFlow 1's order (i, j, f, o)", "layout", "word_language_model", LSTM,
          "i, f, g, o = jnp.split(x_t + self.hh(h), 4, axis=-1)", "i, g, f, o = jnp.split(x_t + self.hh(h), 4, axis=-1)",
          "torch's weight rows are the gates i, f, g, o; TF1's BasicLSTMCell splits i, j, f, o (ONNX: i, o, f, c): "
          "a port written from one reads the other's rows as the wrong gates"),
    Entry("the state read in Flax's carry order (c, h)", "layout", "word_language_model", LSTM,
          "(h, c), x = layer(x, (h0[k], c0[k]))", "(h, c), x = layer(x, (c0[k], h0[k]))",
          "torch's LSTM state is (h, c), Flax's LSTMCell carry (c, h); from zeros the two are the same, so only "
          "a batch that carries a state in (main.py's every chunk after the first; the port's edge_batch) shows it"),
    Entry("the forget gate's bias started at 1 (Keras' unit_forget_bias)", "initialisation", "word_language_model",
          LSTM, "        self.hh = nnx.Linear(hidden, 4 * hidden, kernel_init=init, bias_init=init, rngs=rngs)\n",
          "        self.hh = nnx.Linear(hidden, 4 * hidden, kernel_init=init, bias_init=init, rngs=rngs)\n"
          "        self.hh.bias[...] = self.hh.bias[...].at[hidden : 2 * hidden].add(1.0)\n",
          "Keras' LSTM adds 1 to the forget gate's bias at init (unit_forget_bias=True, its default; TF1's "
          "forget_bias=1.0 adds it in the cell); torch draws every bias from U(+-1/sqrt(h))"),
    Entry("gradient clipping forgotten", "optimizer", "word_language_model", LSTM,
          "optax.chain(optax.clip_by_global_norm(CLIP), optax.sgd(LR))", "optax.sgd(LR)",
          "main.py clips between backward() and its hand-written update, outside any optimizer: a port of "
          "the update alone leaves it out"),
    Entry("log_softmax over the wrong axis", "loss", "word_language_model", LSTM,
          "jax.nn.log_softmax(decoded, axis=1)", "jax.nn.log_softmax(decoded, axis=0)",
          "F.log_softmax(decoded, dim=1) on the (rows, ntoken) view; axis 0 normalises over the rows"),
    # ---------------------------------------------------------------- controls: the same model, written otherwise
    Entry("nanoGPT's warmup and cosine as optax schedules (float32)", "control", "nanogpt", GPT,
          "    return get_lr  # counted in iterations, as train.py counts them: no epochs",
          "    return optax.join_schedules([optax.linear_schedule(LEARNING_RATE / (WARMUP_ITERS + 1), LEARNING_RATE, "
          "WARMUP_ITERS), optax.cosine_decay_schedule(LEARNING_RATE, LR_DECAY_ITERS - WARMUP_ITERS, "
          "MIN_LR / LEARNING_RATE)], [WARMUP_ITERS])",
          "get_lr written with optax's join_schedules, linear_schedule and cosine_decay_schedule, which compute in "
          "float32", control=True),
    Entry("decay groups as optax.multi_transform", "control", "nanogpt", GPT,
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask))""",
          """    groups = {decay: optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                 weight_decay=WEIGHT_DECAY if decay else 0.0) for decay in (True, False)}
    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP), optax.multi_transform(groups, decay_mask))""",
          "configure_optimizers' two groups as two AdamWs, one state each", control=True),
    Entry("clipping by torch's formula", "control", "nanogpt", GPT,
          "optax.clip_by_global_norm(GRAD_CLIP)",
          "optax.GradientTransformation(lambda p: optax.EmptyState(), lambda g, s, p=None: (jax.tree.map("
          "lambda u: u * jnp.minimum(1.0, GRAD_CLIP / (optax.global_norm(g) + 1e-6)), g), s))",
          "clip_grad_norm_'s max_norm / (norm + 1e-6) by hand, where the port uses optax.clip_by_global_norm",
          control=True),
    Entry("GELU's exact form written out", "control", "nanogpt", GPT,
          "nnx.gelu(self.c_fc(x), approximate=False)",
          "(lambda h: 0.5 * h * (1 + jax.scipy.special.erf(h / jnp.sqrt(2.0))))(self.c_fc(x))",
          "x * Phi(x) through erf, as torch documents it", control=True),
    Entry("the causal mask from nnx.make_causal_mask", "control", "nanogpt", GPT,
          "att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)",
          "att = jnp.where(nnx.make_causal_mask(jnp.ones((B, T))).astype(bool), att, jnp.finfo(att.dtype).min)",
          "Flax's own mask, and a large negative for -inf", control=True),
    Entry("LayerNorm's variance the slow way", "control", "nanogpt", GPT,
          "self.ln_2 = nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, rngs=rngs)",
          "self.ln_2 = nnx.LayerNorm(config.n_embd, epsilon=1e-5, use_bias=config.bias, use_fast_variance=False, "
          "rngs=rngs)", "E[(x - mean)^2] for E[x^2] - mean^2", control=True),
    Entry("decoupled decay as a chain", "control", "nanogpt", GPT,
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP),
                       optax.adamw(schedule(steps_per_epoch), b1=BETA1, b2=BETA2, eps=1e-8,
                                   weight_decay=WEIGHT_DECAY, mask=decay_mask))""",
          """    return optax.chain(optax.clip_by_global_norm(GRAD_CLIP), optax.scale_by_adam(b1=BETA1, b2=BETA2, eps=1e-8),
                       optax.masked(optax.add_decayed_weights(WEIGHT_DECAY), decay_mask),
                       optax.scale_by_learning_rate(schedule(steps_per_epoch)))""",
          "optax.adamw spelled out: it is this chain", control=True),
    Entry("the ignored targets left out by jnp.mean(where=)", "control", "nanogpt", GPT,
          "return jnp.sum(jnp.where(counted, losses, 0.0)) / jnp.sum(counted)",
          "return jnp.mean(losses, where=counted)",
          "ignore_index=-1's mean over the counted targets, as NumPy's masked mean; the check on the port's "
          "edge_batch (every 4th target -1) must pass it", control=True),
    Entry("torch's padding as an int", "control", "resnet18", RESNET,
          "strides=stride, padding=((pad, pad), (pad, pad)),", "strides=stride, padding=pad,",
          "nnx.Conv's int padding pads every side by it", control=True),
    Entry("BatchNorm folded into a scale and a shift", "control", "resnet18", RESNET,
          "        return (x - mean) / jnp.sqrt(var + self.eps) * self.scale[...] + self.bias[...]",
          "        inverse = self.scale[...] * jax.lax.rsqrt(var + self.eps)\n"
          "        return x * inverse + (self.bias[...] - mean * inverse)",
          "the inference form of BatchNorm, used in training too", control=True),
    Entry("the warmup and cosine as optax schedules (float32)", "control", "resnet18", RESNET,
          "    return rate\n",
          "    return optax.join_schedules([optax.linear_schedule(LR / warmup, LR + LR / warmup, warmup),\n"
          "                                 optax.cosine_decay_schedule(LR, total - warmup)], [warmup])\n",
          "LambdaLR's per-batch factor (step + 1) / warmup, then the cosine, written with optax's join_schedules, "
          "linear_schedule and cosine_decay_schedule, which compute in float32", control=True),
    Entry("torchvision's ReLUs out of place", "control", "resnet18", "examples/resnet18/torch_model.py",
          "    return net\n",
          "    for m in net.modules():\n"
          "        if isinstance(m, nn.ReLU):\n"
          "            m.inplace = False\n"
          "    return net\n",
          "the same function, without overwriting its input: the torch side of the in-place pair (torchvision's "
          "ReLU(inplace=True) overwrote the kit's recorded outputs, issue #32), so both forms must pass",
          control=True),
    Entry("torchvision's residual add out of place", "control", "resnet18", "examples/resnet18/torch_model.py",
          "    return net\n",
          "\n    def out_of_place(block, x):  # BasicBlock.forward, its module calls in the same order, `out + identity`\n"
          "        out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))\n"
          "        identity = x if block.downsample is None else block.downsample(x)\n"
          "        return block.relu(out + identity)\n"
          "\n"
          "    for m in net.modules():\n"
          "        if isinstance(m, torchvision.models.resnet.BasicBlock):\n"
          "            m.forward = out_of_place.__get__(m)\n"
          "    return net\n",
          "torchvision's BasicBlock adds the shortcut in place (`out += identity`), overwriting bn2's output after "
          "the kit recorded it (issue #32); the torch side of the in-place pair, so both forms must pass",
          control=True),
    Entry("the downsample as nnx.Sequential", "control", "resnet18", RESNET,
          "self.downsample = nnx.List([conv(cin, cout, 1, stride, 0, rngs), BatchNorm(cout)])",
          "self.downsample = nnx.Sequential(conv(cin, cout, 1, stride, 0, rngs), BatchNorm(cout))",
          "torchvision's nn.Sequential(conv1x1, norm) as Flax's own container, called as one module; nnx.Sequential "
          "keeps its modules in .layers, so the port's weight map names layer2.0.downsample.0 "
          "layer2/0/downsample/layers/0 (the proof's Port, the porter's declaration, changes with it)",
          control=True,
          also=(("examples/resnet18/jax_model.py", "            for m in self.downsample:\n"
                 "                identity = m(identity)\n", "            identity = self.downsample(identity)\n"),
                ("examples/resnet18/test_proof.py",
                 'weights=same_names({"conv1": "conv-no-bias", "bn1": "batchnorm", **BLOCKS, **DOWNSAMPLE, "fc": "linear"}),',
                 'weights={**same_names({"conv1": "conv-no-bias", "bn1": "batchnorm", **BLOCKS, "fc": "linear"}),\n'
                 '             **{name: (path.replace("/downsample/", "/downsample/layers/"), kind)\n'
                 '                for name, (path, kind) in same_names(DOWNSAMPLE).items()}},\n'
                 '    layers={d: d.replace(".downsample.", ".downsample.layers.") for d in DOWNSAMPLE},'))),
    Entry("nanoGPT's own attention by hand (torch < 2.0)", "control", "nanogpt", "examples/nanogpt/torch_model.py",
          "    torch.manual_seed(seed)\n    return GPT(CONFIG)\n",
          "    torch.manual_seed(seed)\n"
          "    sdpa = torch.nn.functional.scaled_dot_product_attention\n"
          "    del torch.nn.functional.scaled_dot_product_attention  # model.py checks hasattr: its slow path\n"
          "    try:\n"
          "        return GPT(CONFIG)\n"
          "    finally:\n"
          "        torch.nn.functional.scaled_dot_product_attention = sdpa\n",
          "the attention by hand on both sides: model.py's own path where torch has no scaled_dot_product_attention "
          "(the causal mask a `bias` buffer in the state dict, attn_dropout an nn.Dropout on the weights); as "
          "published, on torch >= 2.0, SDPA with its dropout inside",
          control=True),
    Entry("nanoGPT's attention as nnx.MultiHeadAttention", "control", "nanogpt", GPT, GPT_ATTENTION,
          gpt_mha(" broadcast_dropout=False,"),
          "Flax's own attention module for model.py's by hand: its query, key and value kernels (E, heads, head size) "
          "cut from c_attn's rows, its out kernel c_proj's, its dropout on each attention weight as SDPA's "
          "(broadcast_dropout=False), and the decay mask by name (its biases are 2-D); the weight map and "
          "Port.layers say so", control=True, also=(GPT_DECAY_BY_NAME, *GPT_MHA_PORT)),
    Entry("padding='SAME' for padding=1 (stride 1, 3x3)", "control", "bn_net", BN,
          "nnx.Conv(1, 32, (3, 3), padding=1,", 'nnx.Conv(1, 32, (3, 3), padding="SAME",',
          "at stride 1 with a 3x3 kernel, SAME pads one pixel on every side, as padding=1 does", control=True),
    Entry("StepLR as optax.exponential_decay (float32)", "control", "mnist_net", MNIST,
          "return lambda step: LR * GAMMA ** (step // steps_per_epoch)",
          "return optax.exponential_decay(LR, steps_per_epoch, GAMMA, staircase=True)",
          "optax computes the schedule in float32 (0.7 -> 0.69999999) and torch's float32 Adadelta rounds "
          "the rate to float32 itself: the same training (issue #32; a 1e-12 bound called it a bug)",
          control=True),
    Entry("nll_loss written with one_hot", "control", "mnist_net", MNIST,
          "return -jnp.take_along_axis(output, target[:, None].astype(jnp.int32), axis=1).mean()",
          "return -(jax.nn.one_hot(target, 10) * output).sum(axis=1).mean()",
          "an equal way to write the loss", control=True),
    Entry("flatten through moveaxis", "control", "mnist_net", MNIST,
          "x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)", "x = jnp.moveaxis(x, -1, 1).reshape(x.shape[0], -1)",
          "an equivalent reshape", control=True),
    Entry("running mean's update with its terms reordered", "control", "bn_net", BN,
          "(1 - self.momentum) * self.mean[...] + self.momentum * mean",
          "self.momentum * mean + (1 - self.momentum) * self.mean[...]",
          "a reordered sum", control=True),
    Entry("BatchNorm with a named reciprocal square root", "control", "bn_net", BN,
          "        return (x - mean) / jnp.sqrt(var + self.eps) * self.scale[...] + self.bias[...]",
          "        inverse_std = jax.lax.rsqrt(var + self.eps)\n"
          "        return (x - mean) * inverse_std * self.scale[...] + self.bias[...]",
          "a renamed intermediate and rsqrt for 1/sqrt", control=True),
    Entry("the LSTM's input projection inside each step", "control", "word_language_model", LSTM,
          "        inputs = self.ih(x)  # every time step's input side at once\n\n        def cell(carry, x_t):\n"
          "            h, c = carry\n            i, f, g, o = jnp.split(x_t + self.hh(h), 4, axis=-1)",
          "        inputs = x  # each time step's input side inside the step\n\n        def cell(carry, x_t):\n"
          "            h, c = carry\n            i, f, g, o = jnp.split(self.ih(x_t) + self.hh(h), 4, axis=-1)",
          "W_ih x_t computed step by step in the scan, as torch's documented equations write it, not for every "
          "step at once: the same sums, and the module ih called inside lax.scan", control=True),
    Entry("the LSTM's sigmoid written out", "control", "word_language_model", LSTM,
          "            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)\n"
          "            h = jax.nn.sigmoid(o) * jnp.tanh(c)",
          "            sigmoid = lambda z: 1 / (1 + jnp.exp(-z))\n"
          "            c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)\n            h = sigmoid(o) * jnp.tanh(c)",
          "1 / (1 + exp(-x)) for jax.nn.sigmoid: the same function, rounded otherwise in float32", control=True),
]

# Categories real ports report that none of the six models can show, and why (the table says so).
NOT_APPLICABLE = {
    "mixed precision (autocast, bfloat16 policies)": "no training script here runs under autocast; the kit runs a "
    "script's own autocast step but does not prove the precision policy apart (docs/your-model.md, Limits)",
    "BatchNorm under data parallelism (SyncBatchNorm)": "the kit proves one device; the trainers' data-parallel "
    "tests (tests/test_data_parallel.py) cover the convnet, which has no BatchNorm",
}
