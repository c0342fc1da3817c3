// AdaGrad (Duchi, Hazan & Singer 2011) with torch.optim.Adagrad's semantics:
//   s <- s + g^2;   p <- p - clr g / (sqrt(s) + eps),   clr = lr / (1 + (t - 1) lr_decay)
// clr is folded on the host.
// in:  T g, F clr, F eps, F wd if WD
// out: T p, T sum
F gi = (F)g;
#if WD
gi = gi + wd * (F)p;
#endif
F s = (F)sum + gi * gi;
sum = (T)s;
p = (T)((F)p - clr * (gi / (sqrt(s) + eps)));
