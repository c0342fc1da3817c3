// RMSProp (Tieleman & Hinton 2012) with torch.optim.RMSprop's semantics:
//   s <- alpha s + (1 - alpha) g^2
//   centered: a <- alpha a + (1 - alpha) g,   denominator sqrt(s - a^2) + eps
//   momentum: b <- momentum b + g / denominator,   p <- p - lr b
// oma is 1 - alpha, folded on the host.
// in:  T g, F lr, F alpha, F oma, F eps, F wd if WD, F momentum if MOMENTUM
// out: T p, T sq, T ga if CENTERED, T buf if MOMENTUM
F gi = (F)g;
#if WD
gi = gi + wd * (F)p;
#endif
F s = alpha * (F)sq + oma * gi * gi;
sq = (T)s;
#if CENTERED
F a = alpha * (F)ga + oma * gi;
ga = (T)a;
s = s - a * a;
#endif
F d = gi / (sqrt(s) + eps);
#if MOMENTUM
F b = momentum * (F)buf + d;
buf = (T)b;
d = b;
#endif
p = (T)((F)p - lr * d);
