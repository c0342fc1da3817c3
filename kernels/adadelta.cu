// AdaDelta (Zeiler 2012, Algorithm 1), as torch.optim.Adadelta computes it:
//   s <- rho s + (1 - rho) g^2
//   d <- sqrt(u + eps) / sqrt(s + eps) g      (u: the accumulated update so far)
//   u <- rho u + (1 - rho) d^2;   p <- p - lr d
// omr is 1 - rho, folded on the host.
// in:  T g, F lr, F rho, F omr, F eps, F wd if WD
// out: T p, T sq, T acc
F gi = (F)g;
#if WD
gi = gi + wd * (F)p;
#endif
F s = rho * (F)sq + omr * gi * gi;
sq = (T)s;
F d = sqrt((F)acc + eps) / sqrt(s + eps) * gi;
acc = (T)(rho * (F)acc + omr * d * d);
p = (T)((F)p - lr * d);
