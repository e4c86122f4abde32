from sb3_vpg.vpg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_vpg.vpg.vpg import VPG

__all__ = ["VPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
