"""DIN-style target attention of the ranking model (AIS attention.py, fc.py, dice.py).

Kept quirks: the attention weights are raw scores times a length mask -- no softmax, no
renormalisation (attention.py:37-43, quirk 22); Dice's alpha is a zero constant, not a parameter,
so Dice(x) = sigmoid(BN(x)) * x (dice.py:13-22, quirk 23)."""
import torch
import torch.nn as nn


class Dice(nn.Module):
    def __init__(self, num_features, dim=2):
        super().__init__()
        assert dim in (2, 3)
        self.bn = nn.BatchNorm1d(num_features, eps=1e-9)
        self.sigmoid = nn.Sigmoid()
        self.dim = dim
        shape = (num_features, 1) if dim == 3 else (num_features,)
        # upstream: a plain zeros tensor (never trained, never saved); a non-persistent buffer
        # keeps it out of the state_dict and on the module's device
        self.register_buffer('alpha', torch.zeros(shape), persistent=False)

    def forward(self, x):
        if self.dim == 3:
            x = torch.transpose(x, 1, 2)
        x_p = self.sigmoid(self.bn(x))
        out = self.alpha * (1 - x_p) * x + x_p * x
        return torch.transpose(out, 1, 2) if self.dim == 3 else out


class FullyConnectedLayer(nn.Module):
    """Linear, then per hidden size [BN] + activation + Dropout + Linear; xavier-normal weights."""

    def __init__(self, input_size, hidden_size, bias, batch_norm=True, dropout_rate=0.5,
                 activation='relu', sigmoid=False, dice_dim=2):
        super().__init__()
        assert len(hidden_size) >= 1 and len(bias) == len(hidden_size)
        self.sigmoid = sigmoid
        layers = [nn.Linear(input_size, hidden_size[0], bias=bias[0])]
        for i in range(len(hidden_size) - 1):
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_size[i]))
            if activation.lower() == 'relu':
                layers.append(nn.ReLU(inplace=True))
            elif activation.lower() == 'dice':
                layers.append(Dice(hidden_size[i], dim=dice_dim))
            elif activation.lower() == 'prelu':
                layers.append(nn.PReLU())
            else:
                raise NotImplementedError(activation)
            layers.append(nn.Dropout(p=dropout_rate))
            layers.append(nn.Linear(hidden_size[i], hidden_size[i + 1], bias=bias[i]))
        self.fc = nn.Sequential(*layers)
        if sigmoid:
            self.output_layer = nn.Sigmoid()
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight.data, gain=1.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias.data)

    def forward(self, x):
        return self.output_layer(self.fc(x)) if self.sigmoid else self.fc(x)


class LocalActivationUnit(nn.Module):
    def __init__(self, hidden_size=(80, 40), bias=(True, True), embedding_dim=4, batch_norm=False):
        super().__init__()
        self.fc1 = FullyConnectedLayer(4 * embedding_dim, list(hidden_size), list(bias), batch_norm=batch_norm,
                                       dropout_rate=0.2, activation='dice', dice_dim=3)
        self.fc2 = FullyConnectedLayer(hidden_size[-1], [1], [True], batch_norm=batch_norm,
                                       dropout_rate=0.2, activation='dice', dice_dim=3)

    def forward(self, query, user_behavior):
        queries = query.expand(-1, user_behavior.size(1), -1)  # = cat of T copies of the query
        attention_input = torch.cat([queries, user_behavior, queries - user_behavior,
                                     queries * user_behavior], dim=-1)
        return self.fc2(self.fc1(attention_input))


class AttentionSequencePoolingLayer(nn.Module):
    def __init__(self, embedding_dim=4):
        super().__init__()
        self.local_att = LocalActivationUnit(hidden_size=[64, 16], bias=[True, True],
                                             embedding_dim=embedding_dim, batch_norm=False)

    def forward(self, query_ad, user_behavior, user_behavior_length):
        """query (B,1,E), behaviour (B,T,E), length (B,1) -> (B,1,E) = (score * mask) @ behaviour."""
        attention_score = torch.transpose(self.local_att(query_ad, user_behavior), 1, 2)  # B,1,T
        lengths = user_behavior_length.long()
        mask = torch.arange(user_behavior.size(1), device=lengths.device)[None, :] < lengths[:, None]
        return torch.matmul(attention_score * mask.to(attention_score.dtype), user_behavior)
