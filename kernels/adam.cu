// Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), as torch.optim
// computes them:
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2   (AMSGRAD: vmax <- max(vmax, v))
//   p <- p - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// computed in the paper's efficient form (Section 2) with host-folded scalars
//   step_size = lr sqrt(1 - b2^t) / (1 - b1^t),   eps_hat = eps sqrt(1 - b2^t):
//   p <- p - step_size m / (sqrt(v) + eps_hat)
// (step_size = lr and eps_hat = eps without bias correction). WD adds wd p to the gradient (Adam's L2);
// DECOUPLED first shrinks p by decay = 1 - lr wd (AdamW).
// in:  T g, F step_size, F beta1, F omb1, F beta2, F omb2, F eps_hat, F wd if WD, F decay if DECOUPLED
// out: T p, T m, T v, T vmax if AMSGRAD
F gi = (F)g;
F pi = (F)p;
#if DECOUPLED
pi = pi * decay;
#endif
#if WD
gi = gi + wd * pi;
#endif
F mn = beta1 * (F)m + omb1 * gi;
F vn = beta2 * (F)v + omb2 * gi * gi;
m = (T)mn;
v = (T)vn;
#if AMSGRAD
vn = fmax((F)vmax, vn);
vmax = (T)vn;
#endif
p = (T)(pi - step_size * (mn / (sqrt(vn) + eps_hat)));
