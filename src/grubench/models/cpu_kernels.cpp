// torch.nn.GRU's, torch.nn.LSTM's and torch.nn.RNN's (tanh) equations, JANET's, and the minimal
// RNNs' linear recurrence, on a CPU, forward and backward through time, one layer and direction
// (grubench/models/cpu_kernels.py says why and how it is built).
// Shapes: B batch, T steps, F input features, H units; GRU gate blocks in torch's order r, z, n.
//
// GRU
//   forward   gi = x W_ih^T + b_ih (all steps, one matmul); per step t = 1..T:
//               gh = h_{t-1} W_hh^T + b_hh                          (one matmul)
//               r = sigmoid(gi_r + gh_r)   z = sigmoid(gi_z + gh_z)
//               n = tanh(gi_n + r * gh_n)                           tanh(a) = 2 sigmoid(2a) - 1
//               h_t = n + z * (h_{t-1} - n)                         = (1 - z) n + z h_{t-1}
//   backward  per step t = T..1, with d = dL/dh_t (the output's gradient plus the carried one):
//               dn' = d (1 - z)(1 - n^2)     dz' = d (h_{t-1} - n) z (1 - z)
//               dr' = dn' gh_n r (1 - r)
//               d gh_t = [dr', dz', dn' r]   d gi_t = [dr', dz', dn'] (only dn' kept apart)
//               dL/dh_{t-1} = d z + d gh_t W_hh                     (one matmul)
//             then the weights' gradients over all steps at once (one matmul each).
//
// LSTM (torch's gate blocks i, f, g, o)
//   forward   gi = x W_ih^T + b_ih; per step [a_i, a_f, a_g, a_o] = gi_t + h_{t-1} W_hh^T + b_hh
//               i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
//               c_t = f c_{t-1} + i g     h_t = o tanh(c_t)
//   backward  with dh = dL/dh_t (output's plus carried) and dc = dL/dc_t (carried):
//               dc' = dc + dh o (1 - tanh(c_t)^2)
//               d a = [dc' g i (1 - i), dc' c_{t-1} f (1 - f), dc' i (1 - g^2), dh tanh(c_t) o (1 - o)]
//               dL/dh_{t-1} = d a W_hh    dL/dc_{t-1} = dc' f
//
// RNN (tanh)
//   forward   gi = x W_ih^T + b_ih; per step h_t = tanh(gi_t + h_{t-1} W_hh^T + b_hh)
//   backward  a' = d (1 - h_t^2);  dL/dh_{t-1} = a' W_hh;  d gi_t = a'
//
// JANET (grubench.models.JANETCell; one bias, blocks f, c)
//   forward   gi = x W^T + b; per step [s; a] = gi_t + c_{t-1} U^T
//               f = sigmoid(s)   u = sigmoid(s - beta)   g = tanh(a)
//               c_t = f c_{t-1} + (1 - u) g
//   backward  ds = d c_{t-1} f (1 - f) - d g u (1 - u)    da = d (1 - u)(1 - g^2)
//             dL/dc_{t-1} = d f + [ds, da] U
//
// Linear recurrence (the minimal RNNs, grubench.models.minimal; a_t, b_t [B, T, H] from the input)
//   forward   h_t = a_t h_{t-1} + b_t
//   backward  d_t = dL/dh_t + a_{t+1} d_{t+1};  da_t = d_t h_{t-1};  db_t = d_t;  dL/dh_0 = a_1 d_1
//
// The elementwise work of a step is one pass over [B, H] in the CPU's vectors (at::vec's
// Vectorized), the biases' gradients are added up in the same pass, and the per-step ATen calls
// skip autograd's dispatch, so a training step costs the matmuls and little else.
#if defined(__AVX2__) && !defined(CPU_CAPABILITY)
// at::vec picks its vector width from these, which torch defines per build of its own kernels;
// -march=native tells whether this CPU has AVX2 (AVX-512 machines have it too). Without them
// Vectorized is the portable scalar version.
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif
#include <torch/extension.h>
#include <ATen/cpu/vec/vec.h>

#include <vector>

namespace {

template <typename scalar_t>
using Vec = at::vec::Vectorized<scalar_t>;

// exp_u20 is ATen's polynomial exp in float32 (2.5x Sleef's exp here; the sigmoid within 3e-7
// relative of float64's, Sleef's within 1.5e-7) and Sleef's exp in float64.
template <typename scalar_t>
inline Vec<scalar_t> sigmoid(const Vec<scalar_t>& a) {
  const Vec<scalar_t> one(1);
  return one / (one + a.neg().exp_u20());
}

// tanh(a) = 2 sigmoid(2a) - 1: one exp.
template <typename scalar_t>
inline Vec<scalar_t> tanh_(const Vec<scalar_t>& a) {
  const Vec<scalar_t> one(1), two(2);
  return two * sigmoid(two * a) - one;
}

// One step of the GRU's elementwise work, in vectors of units (the last one partial): from the
// step's input terms gi (row b at gi + b T 3H) and gh [B, 3H], r, z, n, gh_n and h_t, each [B, H].
template <typename scalar_t>
void gru_step(int64_t B, int64_t T, int64_t H, const scalar_t* __restrict__ gi,
              const scalar_t* __restrict__ gh, const scalar_t* __restrict__ h_prev,
              scalar_t* __restrict__ r, scalar_t* __restrict__ z, scalar_t* __restrict__ n,
              scalar_t* __restrict__ ghn, scalar_t* __restrict__ h) {
  using V = Vec<scalar_t>;
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* xi = gi + b * T * 3 * H;
    const scalar_t* hh = gh + b * 3 * H;
    const int64_t o = b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t m = std::min<int64_t>(V::size(), H - j);
      const V rv = sigmoid(V::loadu(xi + j, m) + V::loadu(hh + j, m));
      const V zv = sigmoid(V::loadu(xi + H + j, m) + V::loadu(hh + H + j, m));
      const V hn = V::loadu(hh + 2 * H + j, m);
      const V nv = tanh_(V::loadu(xi + 2 * H + j, m) + rv * hn);
      const V hv = nv + zv * (V::loadu(h_prev + o + j, m) - nv);
      rv.store(r + o + j, m);
      zv.store(z + o + j, m);
      nv.store(n + o + j, m);
      hn.store(ghn + o + j, m);
      hv.store(h + o + j, m);
    }
  }
}

// One step of the GRU's backward pass, with d = carried + dL/dh_t: d gh_t [B, 3H], dn' [B, H] (the
// n block of d gi_t; its r and z blocks are d gh_t's), the direct part d z of dL/dh_{t-1}, and the
// biases' gradients added up in db_ih [3H] and db_hn [H] (the n block of db_hh; its r and z blocks
// are db_ih's).
template <typename scalar_t>
void gru_step_backward(int64_t B, int64_t H, const scalar_t* __restrict__ grad_out,
                       const scalar_t* __restrict__ h_prev, const scalar_t* __restrict__ r,
                       const scalar_t* __restrict__ z, const scalar_t* __restrict__ n,
                       const scalar_t* __restrict__ ghn, const scalar_t* __restrict__ carried,
                       scalar_t* __restrict__ dgh, scalar_t* __restrict__ dgi_n,
                       scalar_t* __restrict__ direct, scalar_t* __restrict__ db_ih,
                       scalar_t* __restrict__ db_hn) {
  for (int64_t b = 0; b < B; ++b) {
    scalar_t* dg = dgh + b * 3 * H;
    const int64_t o = b * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = o + j;
      const scalar_t d = carried[k] + grad_out[k];
      const scalar_t dn = d * (1 - z[k]) * (1 - n[k] * n[k]);
      const scalar_t dz = d * (h_prev[k] - n[k]) * z[k] * (1 - z[k]);
      const scalar_t dr = dn * ghn[k] * r[k] * (1 - r[k]);
      dg[j] = dr;
      dg[H + j] = dz;
      dg[2 * H + j] = dn * r[k];
      dgi_n[k] = dn;
      direct[k] = d * z[k];
      db_ih[j] += dr;
      db_ih[H + j] += dz;
      db_ih[2 * H + j] += dn;
      db_hn[j] += dn * r[k];
    }
  }
}

// One step of the LSTM's elementwise work: from gi_t (row b at gi + b T 4H) and gh [B, 4H], the
// gates i, f, g, o, tanh(c_t), c_t and h_t, each [B, H].
template <typename scalar_t>
void lstm_step(int64_t B, int64_t T, int64_t H, const scalar_t* __restrict__ gi,
               const scalar_t* __restrict__ gh, const scalar_t* __restrict__ c_prev,
               scalar_t* __restrict__ i, scalar_t* __restrict__ f, scalar_t* __restrict__ g,
               scalar_t* __restrict__ o, scalar_t* __restrict__ tc, scalar_t* __restrict__ c,
               scalar_t* __restrict__ h) {
  using V = Vec<scalar_t>;
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* xi = gi + b * T * 4 * H;
    const scalar_t* hh = gh + b * 4 * H;
    const int64_t k = b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t m = std::min<int64_t>(V::size(), H - j);
      const V iv = sigmoid(V::loadu(xi + j, m) + V::loadu(hh + j, m));
      const V fv = sigmoid(V::loadu(xi + H + j, m) + V::loadu(hh + H + j, m));
      const V gv = tanh_(V::loadu(xi + 2 * H + j, m) + V::loadu(hh + 2 * H + j, m));
      const V ov = sigmoid(V::loadu(xi + 3 * H + j, m) + V::loadu(hh + 3 * H + j, m));
      const V cv = fv * V::loadu(c_prev + k + j, m) + iv * gv;
      const V tcv = tanh_(cv);
      iv.store(i + k + j, m);
      fv.store(f + k + j, m);
      gv.store(g + k + j, m);
      ov.store(o + k + j, m);
      tcv.store(tc + k + j, m);
      cv.store(c + k + j, m);
      (ov * tcv).store(h + k + j, m);
    }
  }
}

// One step of the LSTM's backward pass: d a_t [B, 4H] (= d gi_t = d gh_t), dL/dc_{t-1} in place of
// dL/dc_t in dc, and the biases' gradient added up in db [4H].
template <typename scalar_t>
void lstm_step_backward(int64_t B, int64_t H, const scalar_t* __restrict__ grad_out,
                        const scalar_t* __restrict__ carried, scalar_t* __restrict__ dc,
                        const scalar_t* __restrict__ c_prev, const scalar_t* __restrict__ i,
                        const scalar_t* __restrict__ f, const scalar_t* __restrict__ g,
                        const scalar_t* __restrict__ o, const scalar_t* __restrict__ tc,
                        scalar_t* __restrict__ dgh, scalar_t* __restrict__ db) {
  for (int64_t b = 0; b < B; ++b) {
    scalar_t* da = dgh + b * 4 * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = b * H + j;
      const scalar_t dh = carried[k] + grad_out[k];
      const scalar_t dct = dc[k] + dh * o[k] * (1 - tc[k] * tc[k]);
      const scalar_t di = dct * g[k] * i[k] * (1 - i[k]);
      const scalar_t df = dct * c_prev[k] * f[k] * (1 - f[k]);
      const scalar_t dg = dct * i[k] * (1 - g[k] * g[k]);
      const scalar_t dout = dh * tc[k] * o[k] * (1 - o[k]);
      da[j] = di;
      da[H + j] = df;
      da[2 * H + j] = dg;
      da[3 * H + j] = dout;
      dc[k] = dct * f[k];
      db[j] += di;
      db[H + j] += df;
      db[2 * H + j] += dg;
      db[3 * H + j] += dout;
    }
  }
}

// One step of the RNN's elementwise work: h [B, H] holds h_{t-1} W_hh^T + b_hh and becomes
// h_t = tanh(gi_t + h) (gi_t's row b at gi + b T H).
template <typename scalar_t>
void rnn_step(int64_t B, int64_t T, int64_t H, const scalar_t* __restrict__ gi, scalar_t* __restrict__ h) {
  using V = Vec<scalar_t>;
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* xi = gi + b * T * H;
    scalar_t* hb = h + b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t m = std::min<int64_t>(V::size(), H - j);
      tanh_(V::loadu(xi + j, m) + V::loadu(hb + j, m)).store(hb + j, m);
    }
  }
}

// One step of the RNN's backward pass: d a_t = (carried + dL/dh_t)(1 - h_t^2) into d gh_t [B, H]
// (= d gi_t), and added up in db [H] (b_ih's and b_hh's gradient alike).
template <typename scalar_t>
void rnn_step_backward(int64_t B, int64_t H, const scalar_t* __restrict__ grad_out,
                       const scalar_t* __restrict__ h, const scalar_t* __restrict__ carried,
                       scalar_t* __restrict__ dgh, scalar_t* __restrict__ db) {
  for (int64_t b = 0; b < B; ++b) {
    const int64_t o = b * H;
    for (int64_t j = 0; j < H; ++j) {
      const scalar_t d = (carried[o + j] + grad_out[o + j]) * (1 - h[o + j] * h[o + j]);
      dgh[o + j] = d;
      db[j] += d;
    }
  }
}

// One step of JANET's elementwise work: from gi_t (row b at gi + b T 2H, bias included) and
// gh = c_{t-1} U^T [B, 2H], f, u, g and c_t, each [B, H].
template <typename scalar_t>
void janet_step(int64_t B, int64_t T, int64_t H, scalar_t beta, const scalar_t* __restrict__ gi,
                const scalar_t* __restrict__ gh, const scalar_t* __restrict__ c_prev,
                scalar_t* __restrict__ f, scalar_t* __restrict__ u, scalar_t* __restrict__ g,
                scalar_t* __restrict__ c) {
  using V = Vec<scalar_t>;
  const V one(1), shift(beta);
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* xi = gi + b * T * 2 * H;
    const scalar_t* hh = gh + b * 2 * H;
    const int64_t o = b * H;
    for (int64_t j = 0; j < H; j += V::size()) {
      const int64_t m = std::min<int64_t>(V::size(), H - j);
      const V sv = V::loadu(xi + j, m) + V::loadu(hh + j, m);
      const V fv = sigmoid(sv);
      const V uv = sigmoid(sv - shift);
      const V gv = tanh_(V::loadu(xi + H + j, m) + V::loadu(hh + H + j, m));
      const V cv = fv * V::loadu(c_prev + o + j, m) + (one - uv) * gv;
      fv.store(f + o + j, m);
      uv.store(u + o + j, m);
      gv.store(g + o + j, m);
      cv.store(c + o + j, m);
    }
  }
}

// One step of JANET's backward pass: d gh_t [B, 2H] (= d gi_t), the direct part d f of
// dL/dc_{t-1}, and the bias's gradient added up in db [2H].
template <typename scalar_t>
void janet_step_backward(int64_t B, int64_t H, const scalar_t* __restrict__ grad_out,
                         const scalar_t* __restrict__ c_prev, const scalar_t* __restrict__ f,
                         const scalar_t* __restrict__ u, const scalar_t* __restrict__ g,
                         const scalar_t* __restrict__ carried, scalar_t* __restrict__ dgh,
                         scalar_t* __restrict__ direct, scalar_t* __restrict__ db) {
  for (int64_t b = 0; b < B; ++b) {
    scalar_t* dg = dgh + b * 2 * H;
    const int64_t o = b * H;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t k = o + j;
      const scalar_t d = carried[k] + grad_out[k];
      const scalar_t ds = d * c_prev[k] * f[k] * (1 - f[k]) - d * g[k] * u[k] * (1 - u[k]);
      const scalar_t da = d * (1 - u[k]) * (1 - g[k] * g[k]);
      dg[j] = ds;
      dg[H + j] = da;
      direct[k] = d * f[k];
      db[j] += ds;
      db[H + j] += da;
    }
  }
}

// Linear recurrence, one sequence b at a time, its units innermost (contiguous).
template <typename scalar_t>
void linear_forward_seq(int64_t T, int64_t H, const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                        const scalar_t* __restrict__ h0, scalar_t* __restrict__ h) {
  const scalar_t* prev = h0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * H;
    for (int64_t j = 0; j < H; ++j) h[o + j] = a[o + j] * prev[j] + b[o + j];
    prev = h + o;
  }
}

template <typename scalar_t>
void linear_backward_seq(int64_t T, int64_t H, const scalar_t* __restrict__ grad, const scalar_t* __restrict__ a,
                         const scalar_t* __restrict__ h, const scalar_t* __restrict__ h0,
                         scalar_t* __restrict__ da, scalar_t* __restrict__ db, scalar_t* __restrict__ dh0) {
  for (int64_t j = 0; j < H; ++j) dh0[j] = 0;   // carries d_{t+1} a_{t+1} down the steps
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = t * H;
    const scalar_t* prev = t > 0 ? h + o - H : h0;
    for (int64_t j = 0; j < H; ++j) {
      const scalar_t d = grad[o + j] + dh0[j];
      db[o + j] = d;
      da[o + j] = d * prev[j];
      dh0[j] = d * a[o + j];
    }
  }
}

// The input side's gradients from the input terms' gradients, kept time first as the steps make
// them: blocks [T * B, G_k] (together d gi, [T * B, G H]) -> dw_ih [G H, F], and dx [B, T, F] when
// asked (undefined otherwise), with w_ih's rows in the same blocks.
std::pair<at::Tensor, at::Tensor> input_gradients(const std::vector<at::Tensor>& blocks, const at::Tensor& x,
                                                  const at::Tensor& w_ih, bool need_dx) {
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2);
  const auto x_t = x.transpose(0, 1).reshape({T * B, F});   // a copy, time first
  std::vector<at::Tensor> dw;
  at::Tensor dx;
  int64_t row = 0;
  for (const auto& block : blocks) {
    // (a^T b)^T, not b^T a: MKL is an order of magnitude slower on the latter when F is small.
    dw.push_back(at::mm(x_t.t(), block).t());
    const auto w = w_ih.narrow(0, row, block.size(1));
    if (need_dx) dx = dx.defined() ? dx.addmm_(block, w) : at::mm(block, w);
    row += block.size(1);
  }
  if (dx.defined()) dx = dx.view({T, B, F}).transpose(0, 1).contiguous();
  return {at::cat(dw), dx};
}

// The recurrent weights' gradient over all steps, sum_t d gh_t^T h_{t-1}: states [T + 1, B, H]
// (h_0 .. h_T), dgh [T * B, G H] time first -> [G H, H]. A zero h_0 adds nothing: its step is
// left out.
at::Tensor recurrent_gradient(const at::Tensor& states, const at::Tensor& dgh, const at::Tensor& w_hh,
                              bool zero_h0) {
  const int64_t T = states.size(0) - 1, B = states.size(1), H = states.size(2), first = zero_h0 ? 1 : 0;
  if (T == first) return at::zeros_like(w_hh);
  const auto h = states.narrow(0, first, T - first).reshape({(T - first) * B, H});
  // (a^T b)^T, as in input_gradients
  return at::mm(h.t(), dgh.narrow(0, first * B, (T - first) * B)).t().contiguous();
}

}  // namespace

// x [B, T, F] and h0 [B, H] contiguous (zero_h0: h0 is zeros, so its matmul is skipped), torch's
// weights of one layer and direction -> states [T + 1, B, H] (h_0 .. h_T, time first), gates
// [T, 3, B, H] (r, z, n), ghn [T, B, H].
std::vector<at::Tensor> gru_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                                const at::Tensor& w_hh, const at::Tensor& b_ih,
                                const at::Tensor& b_hh, bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;   // called from an autograd.Function
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), H = h0.size(1);
  const auto gi = at::addmm(b_ih, x.view({B * T, F}), w_ih.t());  // [B * T, 3H]
  auto states = at::empty({T + 1, B, H}, x.options());
  states[0].copy_(h0);
  auto gates = at::empty({T, 3, B, H}, x.options());
  auto ghn = at::empty({T, B, H}, x.options());
  auto gh = at::empty({B, 3 * H}, x.options());
  const auto w_hh_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    const scalar_t* gi_p = gi.data_ptr<scalar_t>();
    scalar_t* h = states.data_ptr<scalar_t>();
    scalar_t* r = gates.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t, h += B * H, r += 3 * B * H) {
      if (t == 0 && zero_h0)
        gh.copy_(b_hh.expand({B, 3 * H}));
      else
        at::addmm_out(gh, b_hh, states[t], w_hh_t);
      gru_step<scalar_t>(B, T, H, gi_p + t * 3 * H, gh.data_ptr<scalar_t>(), h, r, r + B * H,
                         r + 2 * B * H, ghn.data_ptr<scalar_t>() + t * B * H, h + B * H);
    }
  });
  return {states, gates, ghn};
}

// grad_out [T, B, H] contiguous (dL/dh_t for t = 1..T, time first) and what forward returned ->
// (dx [B, T, F] or undefined, dh0 [B, H] or undefined, dw_ih, dw_hh, db_ih, db_hh).
std::vector<at::Tensor> gru_backward(const at::Tensor& grad_out, const at::Tensor& x,
                                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                                 const at::Tensor& states, const at::Tensor& gates,
                                 const at::Tensor& ghn, bool need_dx, bool need_dh0, bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), H = states.size(2);
  auto dgh = at::empty({T, B, 3 * H}, x.options());
  auto dgi_n = at::empty({T, B, H}, x.options());
  auto carried = at::zeros({B, H}, x.options());
  auto direct = at::empty({B, H}, x.options());
  auto db_ih = at::zeros({3 * H}, x.options());
  auto db_hn = at::zeros({H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* r = gates.data_ptr<scalar_t>() + t * 3 * B * H;
      gru_step_backward<scalar_t>(B, H, grad_out.data_ptr<scalar_t>() + t * B * H,
                                  states.data_ptr<scalar_t>() + t * B * H, r, r + B * H,
                                  r + 2 * B * H, ghn.data_ptr<scalar_t>() + t * B * H,
                                  carried.data_ptr<scalar_t>(), dgh.data_ptr<scalar_t>() + t * B * 3 * H,
                                  dgi_n.data_ptr<scalar_t>() + t * B * H, direct.data_ptr<scalar_t>(),
                                  db_ih.data_ptr<scalar_t>(), db_hn.data_ptr<scalar_t>());
      if (t > 0 || need_dh0) at::addmm_out(carried, direct, dgh[t], w_hh);
    }
  });
  const auto dgh2 = dgh.view({T * B, 3 * H});
  auto dw_hh = recurrent_gradient(states, dgh2, w_hh, zero_h0);
  // d gi = [d gh's r and z blocks, dn'], in place of a copy of them
  auto [dw_ih, dx] = input_gradients({dgh2.narrow(1, 0, 2 * H), dgi_n.view({T * B, H})}, x, w_ih, need_dx);
  return {dx, need_dh0 ? carried : at::Tensor(), dw_ih, dw_hh, db_ih,
          at::cat({db_ih.narrow(0, 0, 2 * H), db_hn})};
}

// x [B, T, F], h0 and c0 [B, H] contiguous (zero_h0: both are zeros), torch's LSTM weights of one
// layer and direction -> hs and cs [T + 1, B, H] (h_0 .. h_T, c_0 .. c_T), gates [T, 4, B, H]
// (i, f, g, o), tanh(c_t) [T, B, H].
std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh, bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), H = h0.size(1);
  const auto gi = at::addmm(b_ih, x.view({B * T, F}), w_ih.t());  // [B * T, 4H]
  auto hs = at::empty({T + 1, B, H}, x.options());
  auto cs = at::empty({T + 1, B, H}, x.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  auto gates = at::empty({T, 4, B, H}, x.options());
  auto tcs = at::empty({T, B, H}, x.options());
  auto gh = at::empty({B, 4 * H}, x.options());
  const auto w_hh_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    const int64_t BH = B * H;
    scalar_t* h = hs.data_ptr<scalar_t>();
    scalar_t* c = cs.data_ptr<scalar_t>();
    scalar_t* gate = gates.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t, h += BH, c += BH, gate += 4 * BH) {
      if (t == 0 && zero_h0)
        gh.copy_(b_hh.expand({B, 4 * H}));
      else
        at::addmm_out(gh, b_hh, hs[t], w_hh_t);
      lstm_step<scalar_t>(B, T, H, gi.data_ptr<scalar_t>() + t * 4 * H, gh.data_ptr<scalar_t>(), c, gate,
                          gate + BH, gate + 2 * BH, gate + 3 * BH, tcs.data_ptr<scalar_t>() + t * BH, c + BH,
                          h + BH);
    }
  });
  return {hs, cs, gates, tcs};
}

// grad_h [T, B, H] (dL/dh_t, time first) and grad_c [B, H] (dL/dc_T) contiguous, and what
// lstm_forward returned -> (dx or undefined, dh0 or undefined, dc0, dw_ih, dw_hh, db_ih, db_hh).
std::vector<at::Tensor> lstm_backward(const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& x,
                                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& hs,
                                      const at::Tensor& cs, const at::Tensor& gates, const at::Tensor& tcs,
                                      bool need_dx, bool need_dh0, bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), H = hs.size(2);
  auto dgh = at::empty({T, B, 4 * H}, x.options());
  auto carried = at::zeros({B, H}, x.options());
  auto dc = grad_c.clone();
  auto db = at::zeros({4 * H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward", [&] {
    const int64_t BH = B * H;
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* gate = gates.data_ptr<scalar_t>() + t * 4 * BH;
      lstm_step_backward<scalar_t>(B, H, grad_h.data_ptr<scalar_t>() + t * BH, carried.data_ptr<scalar_t>(),
                                   dc.data_ptr<scalar_t>(), cs.data_ptr<scalar_t>() + t * BH, gate, gate + BH,
                                   gate + 2 * BH, gate + 3 * BH, tcs.data_ptr<scalar_t>() + t * BH,
                                   dgh.data_ptr<scalar_t>() + t * 4 * BH, db.data_ptr<scalar_t>());
      if (t > 0 || need_dh0) at::mm_out(carried, dgh[t], w_hh);
    }
  });
  const auto dgh2 = dgh.view({T * B, 4 * H});
  auto dw_hh = recurrent_gradient(hs, dgh2, w_hh, zero_h0);
  auto [dw_ih, dx] = input_gradients({dgh2}, x, w_ih, need_dx);
  return {dx, need_dh0 ? carried : at::Tensor(), dc, dw_ih, dw_hh, db, db.clone()};
}

// x [B, T, F] and h0 [B, H] contiguous (zero_h0 as gru_forward), torch's RNN weights -> states
// [T + 1, B, H].
at::Tensor rnn_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh,
                       bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), H = h0.size(1);
  const auto gi = at::addmm(b_ih, x.view({B * T, F}), w_ih.t());  // [B * T, H]
  auto states = at::empty({T + 1, B, H}, x.options());
  states[0].copy_(h0);
  const auto w_hh_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      auto h = states[t + 1];
      if (t == 0 && zero_h0)
        h.copy_(b_hh.expand({B, H}));
      else
        at::addmm_out(h, b_hh, states[t], w_hh_t);
      rnn_step<scalar_t>(B, T, H, gi.data_ptr<scalar_t>() + t * H, h.data_ptr<scalar_t>());
    }
  });
  return states;
}

// grad_out [T, B, H] contiguous and the states -> (dx or undefined, dh0 or undefined, dw_ih, dw_hh,
// db_ih, db_hh).
std::vector<at::Tensor> rnn_backward(const at::Tensor& grad_out, const at::Tensor& x,
                                     const at::Tensor& w_ih, const at::Tensor& w_hh,
                                     const at::Tensor& states, bool need_dx, bool need_dh0, bool zero_h0) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), H = states.size(2);
  auto dgh = at::empty({T, B, H}, x.options());
  auto carried = at::zeros({B, H}, x.options());
  auto db = at::zeros({H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnn_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      rnn_step_backward<scalar_t>(B, H, grad_out.data_ptr<scalar_t>() + t * B * H,
                                  states.data_ptr<scalar_t>() + (t + 1) * B * H, carried.data_ptr<scalar_t>(),
                                  dgh.data_ptr<scalar_t>() + t * B * H, db.data_ptr<scalar_t>());
      if (t > 0 || need_dh0) at::mm_out(carried, dgh[t], w_hh);
    }
  });
  const auto dgh2 = dgh.view({T * B, H});
  auto dw_hh = recurrent_gradient(states, dgh2, w_hh, zero_h0);
  auto [dw_ih, dx] = input_gradients({dgh2}, x, w_ih, need_dx);
  return {dx, need_dh0 ? carried : at::Tensor(), dw_ih, dw_hh, db, db.clone()};
}

// x [B, T, F] and c0 [B, H] contiguous, a JANET cell's weights -> states [T + 1, B, H] (c_0 .. c_T),
// gates [T, 3, B, H] (f, u, g).
std::vector<at::Tensor> janet_forward(const at::Tensor& x, const at::Tensor& c0,
                                      const at::Tensor& w_ih, const at::Tensor& w_hh,
                                      const at::Tensor& bias, double beta) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), F = x.size(2), H = c0.size(1);
  const auto gi = at::addmm(bias, x.view({B * T, F}), w_ih.t());  // [B * T, 2H]
  auto states = at::empty({T + 1, B, H}, x.options());
  states[0].copy_(c0);
  auto gates = at::empty({T, 3, B, H}, x.options());
  auto gh = at::empty({B, 2 * H}, x.options());
  const auto w_hh_t = w_hh.t();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "janet_forward", [&] {
    const scalar_t* gi_p = gi.data_ptr<scalar_t>();
    scalar_t* c = states.data_ptr<scalar_t>();
    scalar_t* f = gates.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t, c += B * H, f += 3 * B * H) {
      at::mm_out(gh, states[t], w_hh_t);
      janet_step<scalar_t>(B, T, H, static_cast<scalar_t>(beta), gi_p + t * 2 * H,
                           gh.data_ptr<scalar_t>(), c, f, f + B * H, f + 2 * B * H, c + B * H);
    }
  });
  return {states, gates};
}

// grad_out [T, B, H] contiguous and what janet_forward returned -> (dx or undefined, dc0, dw_ih,
// dw_hh, db).
std::vector<at::Tensor> janet_backward(const at::Tensor& grad_out, const at::Tensor& x,
                                       const at::Tensor& w_ih, const at::Tensor& w_hh,
                                       const at::Tensor& states, const at::Tensor& gates,
                                       bool need_dx) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const int64_t B = x.size(0), T = x.size(1), H = states.size(2);
  auto dgh = at::empty({T, B, 2 * H}, x.options());
  auto carried = at::zeros({B, H}, x.options());
  auto direct = at::empty({B, H}, x.options());
  auto db = at::zeros({2 * H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "janet_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* f = gates.data_ptr<scalar_t>() + t * 3 * B * H;
      janet_step_backward<scalar_t>(B, H, grad_out.data_ptr<scalar_t>() + t * B * H,
                                    states.data_ptr<scalar_t>() + t * B * H, f, f + B * H,
                                    f + 2 * B * H, carried.data_ptr<scalar_t>(),
                                    dgh.data_ptr<scalar_t>() + t * B * 2 * H,
                                    direct.data_ptr<scalar_t>(), db.data_ptr<scalar_t>());
      at::addmm_out(carried, direct, dgh[t], w_hh);
    }
  });
  const auto dgh2 = dgh.view({T * B, 2 * H});
  auto dw_hh = recurrent_gradient(states, dgh2, w_hh, false);
  auto [dw_ih, dx] = input_gradients({dgh2}, x, w_ih, need_dx);
  return {dx, carried, dw_ih, dw_hh, db};
}

// a, b [B, T, H] and h0 [B, H] contiguous -> h_1 .. h_T [B, T, H].
at::Tensor linear_forward(const at::Tensor& a, const at::Tensor& b, const at::Tensor& h0) {
  const int64_t B = a.size(0), T = a.size(1), H = a.size(2);
  auto h = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "linear_forward", [&] {
    for (int64_t i = 0; i < B; ++i)
      linear_forward_seq<scalar_t>(T, H, a.data_ptr<scalar_t>() + i * T * H, b.data_ptr<scalar_t>() + i * T * H,
                                   h0.data_ptr<scalar_t>() + i * H, h.data_ptr<scalar_t>() + i * T * H);
  });
  return h;
}

// grad [B, T, H] contiguous and the forward's a, h, h0 -> (da, db, dh0).
std::vector<at::Tensor> linear_backward(const at::Tensor& grad, const at::Tensor& a, const at::Tensor& h,
                                        const at::Tensor& h0) {
  const int64_t B = a.size(0), T = a.size(1), H = a.size(2);
  auto da = at::empty_like(a);
  auto db = at::empty_like(a);
  auto dh0 = at::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "linear_backward", [&] {
    for (int64_t i = 0; i < B; ++i)
      linear_backward_seq<scalar_t>(T, H, grad.data_ptr<scalar_t>() + i * T * H, a.data_ptr<scalar_t>() + i * T * H,
                                    h.data_ptr<scalar_t>() + i * T * H, h0.data_ptr<scalar_t>() + i * H,
                                    da.data_ptr<scalar_t>() + i * T * H, db.data_ptr<scalar_t>() + i * T * H,
                                    dh0.data_ptr<scalar_t>() + i * H);
  });
  return {da, db, dh0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "GRU layer forward (grubench/models/cpu_kernels.cpp)");
  m.def("gru_backward", &gru_backward, "GRU layer backward through time");
  m.def("lstm_forward", &lstm_forward, "LSTM layer forward");
  m.def("lstm_backward", &lstm_backward, "LSTM layer backward through time");
  m.def("rnn_forward", &rnn_forward, "RNN (tanh) layer forward");
  m.def("rnn_backward", &rnn_backward, "RNN (tanh) layer backward through time");
  m.def("janet_forward", &janet_forward, "JANET layer forward");
  m.def("janet_backward", &janet_backward, "JANET layer backward through time");
  m.def("linear_forward", &linear_forward, "linear recurrence h_t = a_t h_{t-1} + b_t");
  m.def("linear_backward", &linear_backward, "linear recurrence backward through time");
}
