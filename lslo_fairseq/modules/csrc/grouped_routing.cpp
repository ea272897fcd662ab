// The per-sentence products of LSLo's ``grouped`` routing kernel (lslo_fairseq/modules/kernels.py),
// run over the sentences of a batch on ATen's intra-op threads.
//
// Each product is small (T x k times k x r_l) and BLAS runs it on one thread, so the Python loop
// uses one core however many there are. Here ``at::parallel_for`` hands contiguous runs of
// sentences (forward, and the input gradient) or of languages (the A and B gradients, which the
// sentences of one language accumulate into) to the threads; each product is the same ``at::mm``
// on the same views as in the Python loop, so results do not depend on the number of threads.
//
// Work list ``rows`` (n, 4) int64: sentence b, first row lo, end row hi of its language in A (its
// columns of B), first row c of the language in ``b_t`` (B^T of the batch's languages); ``scales``
// (n,) float64: the language's scale. Rows are grouped by language.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include <vector>

namespace {

struct Row {
  int64_t b, lo, hi, c;
  double scale;
};

std::vector<Row> read_rows(const at::Tensor& rows, const at::Tensor& scales) {
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == 4 && rows.scalar_type() == at::kLong && rows.is_cpu(),
              "rows: expected a (n, 4) int64 CPU tensor");
  TORCH_CHECK(scales.dim() == 1 && scales.size(0) == rows.size(0) && scales.scalar_type() == at::kDouble,
              "scales: expected a (n,) float64 tensor");
  auto r = rows.contiguous();
  auto s = scales.contiguous();
  const int64_t* p = r.data_ptr<int64_t>();
  const double* q = s.data_ptr<double>();
  std::vector<Row> out(r.size(0));
  for (int64_t i = 0; i < r.size(0); ++i) {
    out[i] = Row{p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3], q[i]};
  }
  return out;
}

// [first, end) index ranges of ``work`` that share one language (rows are grouped by language)
std::vector<std::pair<int64_t, int64_t>> language_runs(const std::vector<Row>& work) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t i = 0; i < static_cast<int64_t>(work.size()); ++i) {
    if (runs.empty() || work[runs.back().first].lo != work[i].lo) {
      runs.emplace_back(i, i + 1);
    } else {
      runs.back().second = i + 1;
    }
  }
  return runs;
}

// body(i) for i in [0, n), contiguous runs of i on each of ATen's intra-op threads
template <typename Body>
void parallel_each(int64_t n, const Body& body) {
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    // plain kernels on buffers autograd never sees (threads do not inherit the caller's grad mode)
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t i = begin; i < end; ++i) {
      body(i);
    }
  });
}

// out = scale (left right), written into ``out`` (a view)
void scaled_mm(at::Tensor out, const at::Tensor& left, const at::Tensor& right, double scale) {
  at::mm_out(out, left, right);
  if (scale != 1.0) {
    out.mul_(scale);
  }
}

// z[b, :, :r] = scale x[:, b] A_l^T ; out[:, b] = z[b, :, :r] B_l^T
void grouped_forward(const at::Tensor& x, const at::Tensor& lora_a, const at::Tensor& b_t, const at::Tensor& rows,
                     const at::Tensor& scales, at::Tensor z, at::Tensor out) {
  const auto work = read_rows(rows, scales);
  parallel_each(static_cast<int64_t>(work.size()), [&](int64_t i) {
    const Row& w = work[i];
    const int64_t r = w.hi - w.lo;
    at::Tensor zb = z.select(0, w.b).narrow(1, 0, r);
    scaled_mm(zb, x.select(1, w.b), lora_a.narrow(0, w.lo, r).t(), w.scale);
    at::Tensor ob = out.select(1, w.b);
    at::mm_out(ob, zb, b_t.narrow(0, w.c, r));
  });
}

// gz_b = scale g_b B_l ; grad_x[:, b] = gz_b A_l (by sentence), then by language:
// grad_b_t[c:c+r] += z_b^T g_b ; grad_a[lo:hi] += gz_b^T x_b. Undefined outputs are not computed.
void grouped_backward(const at::Tensor& x, const at::Tensor& lora_a, const at::Tensor& b_t, const at::Tensor& z,
                      const at::Tensor& grad, const at::Tensor& rows, const at::Tensor& scales, at::Tensor gz,
                      const c10::optional<at::Tensor>& grad_x, const c10::optional<at::Tensor>& grad_a,
                      const c10::optional<at::Tensor>& grad_b_t) {
  const auto work = read_rows(rows, scales);
  const bool need_x = grad_x.has_value(), need_a = grad_a.has_value(), need_b = grad_b_t.has_value();
  if (need_x || need_a) {
    parallel_each(static_cast<int64_t>(work.size()), [&](int64_t i) {
      const Row& w = work[i];
      const int64_t r = w.hi - w.lo;
      at::Tensor gzb = gz.select(0, w.b).narrow(1, 0, r);
      scaled_mm(gzb, grad.select(1, w.b), b_t.narrow(0, w.c, r).t(), w.scale);
      if (need_x) {
        at::Tensor gxb = grad_x->select(1, w.b);
        at::mm_out(gxb, gzb, lora_a.narrow(0, w.lo, r));
      }
    });
  }
  if (need_a || need_b) {
    const auto runs = language_runs(work);
    parallel_each(static_cast<int64_t>(runs.size()), [&](int64_t l) {
      for (int64_t i = runs[l].first; i < runs[l].second; ++i) {
        const Row& w = work[i];
        const int64_t r = w.hi - w.lo;
        if (need_b) {
          grad_b_t->narrow(0, w.c, r).addmm_(z.select(0, w.b).narrow(1, 0, r).t(), grad.select(1, w.b));
        }
        if (need_a) {
          grad_a->narrow(0, w.lo, r).addmm_(gz.select(0, w.b).narrow(1, 0, r).t(), x.select(1, w.b));
        }
      }
    });
  }
}

}  // namespace

TORCH_LIBRARY(lslo_grouped_routing, m) {
  m.def("forward(Tensor x, Tensor lora_a, Tensor b_t, Tensor rows, Tensor scales, Tensor(a!) z, Tensor(b!) out) -> ()");
  m.def("backward(Tensor x, Tensor lora_a, Tensor b_t, Tensor z, Tensor grad, Tensor rows, Tensor scales, "
        "Tensor(a!) gz, Tensor(b!)? grad_x, Tensor(c!)? grad_a, Tensor(d!)? grad_b_t) -> ()");
}

TORCH_LIBRARY_IMPL(lslo_grouped_routing, CPU, m) {
  m.impl("forward", &grouped_forward);
  m.impl("backward", &grouped_backward);
}
