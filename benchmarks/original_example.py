"""The original PyTorch example this project ports, as it was written: the baseline of `make bench`.

    python benchmarks/original_example.py [--epochs 10] [--device auto] [--out predictions.png]

torchvision's FashionMNIST with ToTensor, shuffling DataLoaders of 64, the convnet, cross-entropy
and Adam (lr 1e-3), a second forward pass per batch to count correct predictions, a test pass
after every epoch, and a plot of 15 test predictions at the end. The one change: the data is read
from the files the shared loader found (no download; this machine has no internet), laid out the
way torchvision expects. Everything else is deliberately left as the example had it.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.transforms import ToTensor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from benchmarks.original import torchvision_root  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


class Convnet(nn.Module):
    def __init__(self, conv2d_kernel_size=3):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, conv2d_kernel_size), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, conv2d_kernel_size), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.layers(x)


def train_batch(X, y, model, loss_fn, optimizer, device):
    """One pass of the example's training loop (benchmarks.rows times it as the original's step)."""
    X, y = X.to(device), y.to(device)
    loss = loss_fn(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    correct = (model(X).argmax(1) == y).type(torch.float).sum().item()  # the second forward pass
    return loss.item() * len(y), correct


def train(dataloader, model, loss_fn, optimizer, device):
    model.train()
    size = len(dataloader.dataset)
    total_loss, correct = 0.0, 0
    for X, y in dataloader:
        batch_loss, batch_correct = train_batch(X, y, model, loss_fn, optimizer, device)
        total_loss += batch_loss
        correct += batch_correct
    return total_loss / size, correct / size


def test(dataloader, model, loss_fn, device):
    model.eval()
    size = len(dataloader.dataset)
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            total_loss += loss_fn(pred, y).item() * len(y)
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return total_loss / size, correct / size


def plot_predictions(model, dataset, device, path):
    model.eval()
    fig, axes = plt.subplots(3, 5, figsize=(10, 6))
    with torch.no_grad():
        for i, ax in enumerate(axes.flat):
            image, label = dataset[i]
            pred = model(image[None].to(device)).argmax(1).item()
            ax.imshow(image[0], cmap="gray")
            ax.set_title(f"{CLASSES[pred]}\n({CLASSES[label]})", color="green" if pred == label else "red",
                         fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def datasets():
    """torchvision's FashionMNIST train and test sets, as the example loads them (ToTensor)."""
    root = torchvision_root()
    training_data = torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=ToTensor())
    test_data = torchvision.datasets.FashionMNIST(root, train=False, download=False, transform=ToTensor())
    return training_data, test_data


def setup(device):
    """The example's model (its lazy layer materialised), loss and optimizer."""
    model = Convnet().to(device)
    model(torch.zeros(1, 1, 28, 28, device=device))  # materialise the lazy layer
    return model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda")
    parser.add_argument("--out", default="runs/original/predictions.png", help="where the prediction plot goes")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    training_data, test_data = datasets()
    train_dataloader = DataLoader(training_data, batch_size=64, shuffle=True)
    test_dataloader = DataLoader(test_data, batch_size=64)

    model, loss_fn, optimizer = setup(device)
    print(model)
    print(f"trainable parameters: {sum(p.numel() for p in model.parameters()):,}")

    for epoch in range(1, args.epochs + 1):
        train_loss, train_acc = train(train_dataloader, model, loss_fn, optimizer, device)
        test_loss, test_acc = test(test_dataloader, model, loss_fn, device)
        print(f"epoch {epoch}: train loss {train_loss:.4f}, train acc {100 * train_acc:.2f}%, "
              f"test loss {test_loss:.4f}, test acc {100 * test_acc:.2f}%", flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plot_predictions(model, test_data, device, args.out)
    print(f"final test accuracy: {100 * test_acc:.2f}%; predictions plotted to {args.out}")


if __name__ == "__main__":
    main()
